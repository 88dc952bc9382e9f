import numpy as np
import pytest
from conftest import make_datamodule, random_image, save_checkpoint, write_image

from camlit.data.batch import UNKNOWN
from camlit.data.manipulations import UNALTERED
from camlit.data.pseudo import UNKNOWN_MANIPULATION, choose, pseudo_label_samples
from camlit.errors import CamlitError
from camlit.inference.predict import main as predict


def test_the_most_confident_share_per_class_and_group():
    names = [f"img_{k}_unalt.tif" for k in range(6)] + [f"img_{k}_manip.tif" for k in range(6)]
    probabilities = np.array(
        [
            [0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1],  # unaltered, predicted 0
            [0.1, 0.6, 0.3], [0.2, 0.7, 0.1], [0.4, 0.3, 0.3],  # 1, 1, and 0 again
            [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6],  # manipulated: 0, 2, 2
            [0.3, 0.3, 0.4], [0.1, 0.85, 0.05], [0.6, 0.3, 0.1],  # 2, 1, 0
        ]
    )  # fmt: skip
    # share 1: a fair share of 6 images among 3 classes is 2 per class and group.
    assert choose(names, probabilities, 1.0) == sorted(
        [
            ("img_0_unalt.tif", 0), ("img_1_unalt.tif", 0), ("img_4_unalt.tif", 1), ("img_3_unalt.tif", 1),
            ("img_0_manip.tif", 0), ("img_5_manip.tif", 0), ("img_1_manip.tif", 2), ("img_2_manip.tif", 2),
            ("img_4_manip.tif", 1),
        ]
    )  # fmt: skip
    assert choose(names, probabilities, 0.5) == sorted(
        [("img_0_unalt.tif", 0), ("img_4_unalt.tif", 1), ("img_5_manip.tif", 0), ("img_1_manip.tif", 2),
         ("img_4_manip.tif", 1)]
    )  # fmt: skip


@pytest.fixture
def test_folder_and_probs(tmp_path):
    """Six Kaggle-named test images and the --probs CSV that predict.py writes for them."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "test"
    for k in range(6):
        write_image(folder / f"img_{k}_{'manip' if k % 2 else 'unalt'}.tif", random_image(rng, 48, 48))
    ckpt = save_checkpoint(tmp_path / "model.ckpt")
    probs = tmp_path / "probs.csv"
    options = ["--crops", "1", "--num_workers", "0", "--no_progress", "--probs", str(probs)]
    predict(["--ckpt_path", str(ckpt), "--input", str(folder), "--output", str(tmp_path / "s.csv"), *options])
    return folder, probs


def test_pseudo_labelled_images_join_training_only(flat_tree, test_folder_and_probs):
    folder, probs = test_folder_and_probs
    plain = make_datamodule(flat_tree)
    datamodule = make_datamodule(
        flat_tree, pseudo_labels=str(probs), pseudo_labels_dir=str(folder), pseudo_labels_share=1.0
    )
    added = [s for s in datamodule.train_set.samples if s.photo.startswith("pseudo/")]
    # 3 images per group, 3 classes: at most one per class and group, each one predicted as that class.
    assert 1 <= len(added) <= 6 and len(datamodule.train_set) == len(plain.train_set) + len(added)
    assert len(datamodule.val_set) == len(plain.val_set)
    for sample in added:
        index = datamodule.train_set.samples.index(sample)
        _, label, manipulation, manipulated = datamodule.train_set[index, 0, 0]
        assert label == sample.label
        if "_manip" in sample.path:
            assert sample.manipulation == UNKNOWN_MANIPULATION and manipulation == UNKNOWN and manipulated
        else:
            assert sample.manipulation == UNALTERED and manipulation == 0 and not manipulated


def save_as_latin1(tmp, name, accented):
    """The test image renamed with an accent, and the probabilities CSV saved in Latin-1."""
    (tmp / "test" / name).rename(tmp / "test" / accented)
    probs = tmp / "probs.csv"
    probs.write_bytes(probs.read_text(encoding="utf-8").replace(name, accented).encode("latin-1"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda options, tmp: options.pop("pseudo_labels_dir"), "needs --data.pseudo_labels_dir"),
        (lambda options, tmp: options.update(pseudo_labels=str(tmp / "none.csv")), "none.csv: no such file"),
        (lambda options, tmp: (tmp / "test" / "img_3_manip.tif").unlink(), "img_3_manip.tif is not in"),
        (lambda options, tmp: options.update(pseudo_labels=str(tmp / "s.csv")), "expected predict.py's --probs"),
        (lambda options, tmp: save_as_latin1(tmp, "img_3_manip.tif", "img_3_é_manip.tif"), "save the CSV as UTF-8"),
    ],
)
def test_pseudo_label_mistakes_name_the_file(flat_tree, test_folder_and_probs, tmp_path, change, message):
    folder, probs = test_folder_and_probs
    options = {"pseudo_labels": str(probs), "pseudo_labels_dir": str(folder)}
    change(options, tmp_path)
    with pytest.raises(CamlitError, match=message):
        make_datamodule(flat_tree, **options)


def test_a_file_name_with_spaces_at_its_ends_is_read_back_as_predict_wrote_it(tmp_path):
    """fit refused predict's own --probs: ` a_unalt.png` was read as `a_unalt.png`, not in the folder."""
    rng = np.random.default_rng(4)
    folder = tmp_path / "test"
    for name in (" img_0_unalt.tif", "  img 1_unalt.tif", "img_2_manip.tif"):
        write_image(folder / name, random_image(rng, 48, 48))
    probs = tmp_path / "probs.csv"
    options = ["--crops", "1", "--num_workers", "0", "--no_progress", "--probs", str(probs)]
    ckpt = save_checkpoint(tmp_path / "model.ckpt")
    predict(["--ckpt_path", str(ckpt), "--input", str(folder), "--output", str(tmp_path / "s.csv"), *options])
    classes = ["HTC-1-M7", "LG-Nexus-5x", "Motorola-X"]
    samples = pseudo_label_samples(probs, folder, classes, share=3.0)
    assert sorted(sample.path for sample in samples) == sorted(str(p) for p in folder.iterdir())
