import numpy as np
import pytest
from conftest import one_error_line, random_image, write_image

from camlit.data.manipulations import NAMES
from camlit.data.quantization import FREQUENCIES
from camlit.errors import CamlitError
from camlit.inference import openset, openset_fit
from camlit.inference.openset_report import auroc
from camlit.inference.predict import main as predict
from camlit.inference.tta import CropPlan


def test_a_threshold_calibrated_on_known_scores_accepts_95_percent_of_them():
    rng = np.random.default_rng(0)
    for count in (20, 200, 1001):
        known = rng.normal(size=count)
        model = openset.OpenSetModel("msp")
        model.calibrate(known, CropPlan(count=10))
        accepted = np.mean(~model.is_unknown(known))
        assert 0.95 <= accepted < 0.95 + 1 / count + 1e-9
        assert model.is_unknown(np.array([known.max() + 1]))[0]


@pytest.mark.parametrize("method", openset.SCORES)
def test_every_score_ranks_photos_far_from_the_training_cameras_higher(method, tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 16)) * 4
    labels = np.repeat(np.arange(3), 20)

    def photos(points):
        # 5 crops per photo around each point; the logits favour the nearest training camera.
        features = [point + 0.3 * rng.normal(size=(5, 16)) for point in points]
        logits = [-((f.mean(axis=0) - centres) ** 2).sum(axis=1)[None].repeat(5, 0) / 8 for f in features]
        if openset.reads_quantization(method):  # every photo with the same JPEG steps
            features = [np.hstack([rows, np.tile(TABLE, (5, 1))]) for rows in features]
        return logits, features

    _, train_features = photos(centres[labels])
    model = openset_fit.fit(method, train_features, labels, 3)
    known = model.scores(*photos(centres[rng.integers(0, 3, 30)]))
    unknown = model.scores(*photos(centres.mean(axis=0) + rng.normal(size=(30, 16)) * 0.5))
    assert auroc(known, unknown) > 0.9
    model.calibrate(known, CropPlan(count=5))
    model.save(openset.calibration_path(tmp_path / "model.ckpt"))
    loaded = openset.load(tmp_path / "model.ckpt")
    assert (loaded.method, loaded.threshold, loaded.crops, loaded.grid) == (method, model.threshold, 5, False)
    np.testing.assert_allclose(loaded.scores(*photos(centres[:2])).shape, (2,))


STEPS = np.arange(2, 2 + len(FREQUENCIES), dtype=np.float64)
NO_FIRST = np.zeros(len(FREQUENCIES))


def table(steps: np.ndarray, undone: int = 0, first: np.ndarray = NO_FIRST) -> np.ndarray:
    """A camlit.data.undo.camera_table row: the steps, the first table's, the manipulation undone."""
    return np.concatenate([steps, first, [undone]])


TABLE = table(STEPS)


def test_jpeg_steps_seen_in_no_training_photo_raise_the_score_unless_a_manipulation_hid_them():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(2), 30)
    stem = rng.normal(size=(2, 8))[labels] + rng.normal(size=(60, 8))
    tables = np.stack([TABLE, table(STEPS + 1)])[labels]
    model = openset_fit.fit("relative_stem_jpeg", list(np.hstack([stem, tables])[:, None]), labels, 2)
    plain = openset_fit.fit("relative_stem", list(stem[:, None]), labels, 2)
    photo = rng.normal(size=8)
    other, hidden = STEPS.copy(), STEPS.copy()
    other[:9] += 100  # a third of the steps differ from every training photo's
    hidden[:9] = 0  # a third of the steps do not show
    gamma = NAMES.index("gamma0.8")
    tables = [
        (TABLE, False), (table(STEPS + 1), False), (table(other), False), (table(hidden), False),
        # Known manipulated: with nothing undone (its steps are a recompression's, or none), the
        # step term is left out; with its gamma undone, its steps are the camera's again, and a
        # step it does not show is no evidence.
        (table(other), True), (table(other, gamma), True), (table(hidden, gamma), True),
    ]  # fmt: skip
    rows = [np.hstack([photo, table])[None] for table, _ in tables]
    base = plain.scores([None] * len(rows), [photo[None]] * len(rows))
    scores = model.scores([None] * len(rows), rows, [manipulated for _, manipulated in tables])
    weight = float(model.arrays["step_weight"])
    assert weight > 0
    expected = base + weight * np.array([0, 0, 1 / 3, 1 / 3, 0, 1 / 3, 0])
    np.testing.assert_allclose(scores, expected, rtol=1e-6, atol=1e-9)


def test_a_recompressed_photos_first_table_off_every_training_photos_raises_its_score():
    """A manipulated photo where nothing was undone: its first table against the bank of the
    training photos saved again; none where the calibration has no bank (an older file)."""
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(2), 30)
    stem = rng.normal(size=(2, 8))[labels] + rng.normal(size=(60, 8))
    rows = list(np.hstack([stem, np.tile(TABLE, (60, 1))])[:, None])
    first = np.zeros(len(FREQUENCIES))
    first[:4] = [5, 6, 7, 8]
    bank = np.stack([first, np.zeros(len(FREQUENCIES))])  # the second shows no step: left out
    model = openset_fit.fit("relative_stem_jpeg", rows, labels, 2, first_tables=bank)
    assert model.arrays["first_steps"].shape == (1, len(FREQUENCIES))
    photo = rng.normal(size=8)
    off = first.copy()
    off[3] = 11  # one of the four shown steps off the bank
    photos = [np.hstack([photo, table(STEPS, first=f)])[None] for f in (first, off, off)]
    scores = model.scores([None] * 3, photos, [True, True, False])
    weight = float(model.arrays["step_weight"])
    # Known unaltered (the last), the first table is not read; its own steps match the training photos'.
    np.testing.assert_allclose(scores - scores[0], [0, weight / 4, 0], atol=1e-9)
    # A bank read before the reader read finer first steps lacks them: no term, not a mismatch.
    del model.arrays["first_reader"]
    older_reader = model.scores([None] * 3, photos, [True, True, False])
    np.testing.assert_allclose(older_reader, older_reader[0], atol=1e-9)
    del model.arrays["first_steps"]
    older = model.scores([None] * 3, photos, [True, True, False])
    np.testing.assert_allclose(older, older[0], atol=1e-9)


def test_relative_stem_is_the_class_distance_less_the_distance_to_all_training_photos():
    # Ren et al. 2021, written out in the raw feature space: with every principal component kept,
    # the projection is a rotation and leaves Mahalanobis distances as they are.
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 40)
    train = rng.normal(size=(3, 6))[labels] + rng.normal(size=(120, 6)) @ rng.normal(size=(6, 6))
    model = openset_fit.fit("relative_stem", [row[None] for row in train], labels, 3)
    photos = rng.normal(size=(5, 6)) * 2
    means = np.stack([train[labels == k].mean(axis=0) for k in range(3)])
    within = np.linalg.inv(np.cov((train - means[labels]).T, ddof=3))
    overall = np.linalg.inv(np.cov(train.T))
    class_distance = np.min([np.einsum("nd,de,ne->n", photos - m, within, photos - m) for m in means], axis=0)
    centred = photos - train.mean(axis=0)
    expected = class_distance - np.einsum("nd,de,ne->n", centred, overall, centred)
    np.testing.assert_allclose(model.scores([None] * 5, [row[None] for row in photos]), expected, atol=1e-2)


def calibrated(ckpt, tmp_path, threshold: float):
    """A copy of the test checkpoint with a k-NN calibration of the given threshold beside it."""
    copy = tmp_path / f"t{threshold}" / "model.ckpt"
    copy.parent.mkdir()
    copy.write_bytes(ckpt.read_bytes())
    model = openset.OpenSetModel("knn", threshold, 3, {"bank": np.eye(256)[:4]})  # resnet_tiny pools 256 features
    model.save(openset.calibration_path(copy))
    return copy


def test_unknown_names_photos_above_the_threshold_and_leaves_the_submission_alone_without_it(ckpt, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "test"
    for name in ("img_b.tif", "img_a.tif", "img_c.png"):
        write_image(folder / name, random_image(rng, 48, 48))

    def run(checkpoint, name, *extra):
        args = ["--ckpt_path", str(checkpoint), "--input", str(folder), "--output", str(tmp_path / name)]
        predict([*args, "--no_progress", "--crops", "3", "--num_workers", "0", *extra])
        return (tmp_path / name).read_bytes()

    plain = run(ckpt, "plain.csv", "--probs", str(tmp_path / "plain_probs.csv"))
    accept_all = calibrated(ckpt, tmp_path, float("inf"))
    reject_all = calibrated(ckpt, tmp_path, float("-inf"))
    # Without --unknown a calibration beside the checkpoint changes nothing, byte for byte.
    assert run(accept_all, "off.csv", "--probs", str(tmp_path / "off_probs.csv")) == plain
    assert (tmp_path / "off_probs.csv").read_bytes() == (tmp_path / "plain_probs.csv").read_bytes()
    assert run(accept_all, "on.csv", "--unknown") == plain
    rows = run(reject_all, "all.csv", "--unknown", "--probs", str(tmp_path / "probs.csv")).decode().splitlines()
    assert rows == ["fname,camera", "img_a.tif,unknown", "img_b.tif,unknown", "img_c.png,unknown"]
    probs = (tmp_path / "probs.csv").read_text().splitlines()
    assert probs[0].endswith(",unknown_score") and len(probs[1].split(",")) == len(probs[0].split(","))
    # A calibration fitted for another number of cameras than the checkpoint's three is refused.
    arrays = {"centre": np.zeros(4), "components": np.eye(4), "class_means": np.zeros((4, 4)), "precision": np.eye(4)}
    openset.OpenSetModel("mahalanobis", 0.5, 3, arrays).save(openset.calibration_path(reject_all))
    with pytest.raises(SystemExit):
        run(reject_all, "other.csv", "--unknown")
    assert not (tmp_path / "other.csv").exists()
    plain_rows = (tmp_path / "plain_probs.csv").read_text().splitlines()
    assert [row.rsplit(",", 1)[0] for row in probs[1:]] == plain_rows[1:]


def test_a_linked_checkpoints_calibration_is_found_beside_the_file_it_links_to(ckpt, tmp_path):
    """`--ckpt_path link.ckpt` looked for link.unknown.npz beside the link, and said none existed."""
    calibrated_checkpoint = calibrated(ckpt, tmp_path, float("-inf"))
    link = tmp_path / "elsewhere" / "link.ckpt"
    link.parent.mkdir()
    link.symlink_to(calibrated_checkpoint)
    assert openset.calibration_path(link) == openset.calibration_path(calibrated_checkpoint)
    assert openset.load(link).threshold == openset.load(calibrated_checkpoint).threshold


def test_unknown_without_a_calibration_is_one_error_line(ckpt, tmp_path, capsys):
    from conftest import one_error_line

    folder = tmp_path / "test"
    write_image(folder / "img.png", random_image(np.random.default_rng(0), 48, 48))
    args = ["--ckpt_path", str(ckpt), "--input", str(folder), "--output", str(tmp_path / "s.csv"), "--unknown"]
    line = one_error_line(capsys, lambda: predict(args))
    assert "camlit calibrate --ckpt_path" in line and not (tmp_path / "s.csv").exists()


def test_a_calibration_missing_what_its_score_reads_is_refused_by_name(tmp_path):
    # A file from someone else: it names the JPEG score but holds no table bank.
    model = openset.OpenSetModel("relative_stem_jpeg", 1.0, 10, {"centre": np.zeros(4), "step_weight": np.array(1.0)})
    model.save(openset.calibration_path(tmp_path / "m.ckpt"))
    with pytest.raises(CamlitError, match="not a whole relative_stem_jpeg calibration .no components, class_means"):
        openset.load(tmp_path / "m.ckpt")


def test_each_kind_of_photo_gets_its_own_threshold_and_the_file_keeps_both(tmp_path):
    rng = np.random.default_rng(2)
    plain, manipulated = rng.normal(size=400), rng.normal(size=400) + 3  # manipulations move every score
    flags = np.r_[np.zeros(400, bool), np.ones(400, bool)]
    model = openset.OpenSetModel("msp")
    model.calibrate(np.r_[plain, manipulated], CropPlan(count=10), flags)
    assert 0.95 <= np.mean(~model.is_unknown(plain, [False] * 400)) < 0.96
    assert 0.95 <= np.mean(~model.is_unknown(manipulated, [True] * 400)) < 0.96
    # One threshold for both would reject most manipulated known photos.
    assert np.mean(model.is_unknown(manipulated, [False] * 400)) > 0.5
    model.save(openset.calibration_path(tmp_path / "m.ckpt"))
    loaded = openset.load(tmp_path / "m.ckpt")
    assert (loaded.threshold, loaded.threshold_manipulated) == (model.threshold, model.threshold_manipulated)


def test_a_calibration_of_unaltered_photos_only_applies_its_threshold_to_all():
    model = openset.OpenSetModel("msp")
    model.calibrate(np.arange(100.0), CropPlan(count=10))
    assert np.isnan(model.threshold_manipulated)
    assert model.is_unknown([96.0, 96.0], [False, True]).tolist() == [True, True]


def test_unknown_uses_the_manipulated_threshold_for_manip_names(ckpt, tmp_path):
    folder = tmp_path / "test"
    rng = np.random.default_rng(0)
    for name in ("img_a_unalt.tif", "img_b_manip.tif"):
        write_image(folder / name, random_image(rng, 48, 48))
    copy = calibrated(ckpt, tmp_path, float("-inf"))  # rejects every unaltered photo
    model = openset.load(copy)
    model.threshold_manipulated = float("inf")  # accepts every manipulated one
    model.save(openset.calibration_path(copy))
    args = ["--ckpt_path", str(copy), "--input", str(folder), "--output", str(tmp_path / "s.csv")]
    predict([*args, "--no_progress", "--crops", "3", "--num_workers", "0", "--unknown"])
    rows = dict(line.split(",") for line in (tmp_path / "s.csv").read_text().splitlines()[1:])
    assert rows["img_a_unalt.tif"] == "unknown" and rows["img_b_manip.tif"] != "unknown"


def test_unknown_with_other_crops_than_the_calibration_is_one_error_line(ckpt, tmp_path, capsys):
    # A mean over more crops, or a grid, spreads the scores less: the thresholds would not hold.
    from conftest import one_error_line

    folder = tmp_path / "test"
    write_image(folder / "img.png", random_image(np.random.default_rng(0), 48, 48))
    copy = calibrated(ckpt, tmp_path, 0.5)  # 3 random crops
    base = ["--ckpt_path", str(copy), "--input", str(folder), "--output", str(tmp_path / "s.csv"), "--unknown"]
    remedies = {
        ("--crops", "4"): "calibrate again with --crops 4",
        ("--crops", "3", "--crop_grid"): "calibrate again with --crops 3 --crop_grid",
        # calibrate takes neither option: calibrating again with --crops 3 changed nothing.
        ("--crops", "3", "--tta_manipulations", "jpeg70"): "drop --crop_size and --tta_manipulations",
    }
    for extra, remedy in remedies.items():
        line = one_error_line(capsys, lambda extra=extra: predict([*base, *extra, "--num_workers", "0"]))
        assert "3 random crops" in line and line.endswith(remedy) and not (tmp_path / "s.csv").exists()
    predict([*base, "--crops", "3", "--num_workers", "0", "--no_progress"])
    assert (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "flipped_byte", "threshold_of_two"])
def test_a_damaged_calibration_file_is_refused_in_one_line(tmp_path, damage):
    checkpoint = tmp_path / "model.ckpt"
    path = openset.calibration_path(checkpoint)
    model = openset.OpenSetModel("knn", 0.5, 3, {"bank": np.eye(4)})
    model.save(path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped_byte":
        offset = data.index(b"method.npy") + 200  # inside the first array's data: its CRC no longer holds
        path.write_bytes(data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :])
    else:
        np.savez(path.with_suffix(""), method="knn", threshold=np.array([0.5, 0.6]), crops=3, bank=np.eye(4))
    with pytest.raises(CamlitError, match=f"{path} is not an open-set calibration"):
        openset.load(checkpoint)


def test_a_threshold_that_is_not_a_number_is_refused_and_one_kind_only_is_not(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    path = openset.calibration_path(checkpoint)
    openset.OpenSetModel("knn", float("nan"), 3, {"bank": np.eye(4)}).save(path)
    with pytest.raises(CamlitError, match=f"{path} holds a threshold that is not a number"):
        openset.load(checkpoint)
    # A run that held out unaltered photos only has no manipulated threshold: NaN, as calibrate writes it.
    openset.OpenSetModel("knn", 0.5, 3, {"bank": np.eye(4)}).save(path)
    assert np.isnan(openset.load(checkpoint).threshold_manipulated)


def test_a_batch_of_unusable_images_alone_gives_no_rows_for_the_jpeg_score(ckpt, tmp_path):
    """A batch holding only an image smaller than the crop has no photo to describe (a traceback)."""
    from camlit.inference.features import WithFeatures
    from camlit.inference.loading import load_checkpoint
    from camlit.inference.running import predict_paths

    tiny = write_image(tmp_path / "a_tiny.png", random_image(np.random.default_rng(0), 20, 20))
    good = write_image(tmp_path / "b_good.png", random_image(np.random.default_rng(1), 64, 64))
    model, size = load_checkpoint(ckpt, "cpu")
    plan = CropPlan(size=size, count=2)
    predictions = predict_paths(WithFeatures(model, quantization=True), [tiny, good], plan, batch_size=2, device="cpu")
    assert predictions.usable.tolist() == [False, True]


def test_a_calibration_set_on_other_weights_is_refused_and_one_without_the_record_is_taken(ckpt, tmp_path, capsys):
    """A resumed run writes last.ckpt again beside its old calibration, and a calibration copied from
    another run fits beside any checkpoint of as many cameras: the other weights' thresholds were
    used without a word."""
    import torch

    from camlit.training.checkpointing import file_hash

    copy = calibrated(ckpt, tmp_path, 0.5)
    model = openset.load(copy)  # a calibration older than the record is taken as it is
    model.checkpoint_sha256 = file_hash(copy)
    model.save(openset.calibration_path(copy))
    assert openset.load(copy).checkpoint_sha256 == file_hash(copy)
    checkpoint = torch.load(copy, weights_only=False)
    checkpoint["epoch"] += 1
    torch.save(checkpoint, copy)
    write_image(tmp_path / "test" / "img_a.tif", random_image(np.random.default_rng(0), 48, 48))
    output = tmp_path / "sub.csv"
    args = ["--ckpt_path", str(copy), "--input", str(tmp_path / "test"), "--output", str(output), "--unknown"]
    line = one_error_line(capsys, lambda: predict(args))
    calibration = openset.calibration_path(copy)
    assert line.startswith(f"error: --unknown: {calibration} was set on another checkpoint than {copy}")
    assert "camlit calibrate --ckpt_path" in line and not output.exists()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_calibration_holding_values_that_are_not_numbers_is_refused(tmp_path, value):
    """A NaN in the fitted arrays scored every photo NaN, never unknown, without a word."""
    checkpoint = tmp_path / "model.ckpt"
    bank = np.eye(4)
    bank[1, 2] = value
    openset.OpenSetModel("knn", 0.5, 3, {"bank": bank}).save(openset.calibration_path(checkpoint))
    with pytest.raises(CamlitError, match="holds values that are not numbers in bank"):
        openset.load(checkpoint)
