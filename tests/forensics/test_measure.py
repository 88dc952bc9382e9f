import numpy as np
import pytest

from camlit.forensics.measure import main
from camlit.forensics.measure_splices import choose_threshold
from camlit.forensics.splice import SpliceResult


def one_error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_a_missing_folder_or_checkpoint_is_one_error_line_naming_it(tmp_path, capsys):
    (tmp_path / "sets").mkdir()
    (tmp_path / "known").mkdir()
    (tmp_path / "model.ckpt").write_bytes(b"not a checkpoint")
    argv = ["--ckpt_path", str(tmp_path / "model.ckpt"), "--sets", str(tmp_path / "sets")]
    argv += ["--known", str(tmp_path / "known"), "--work", str(tmp_path / "work"), "--json", str(tmp_path / "r.json")]
    missing = str(tmp_path / "tune_unknown")
    assert (
        one_error_line(capsys, [*argv, "--tune_unknown", missing]) == f"error: --tune_unknown {missing}: no such folder"
    )
    assert not (tmp_path / "work").exists()  # nothing written before the input is checked
    assert "model.ckpt" in one_error_line(capsys, argv)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "work").exists()


def splice_results(scores, regions):
    return [SpliceResult("disagreement", np.zeros((1, 1)), score, 0, 1) for score in scores], regions


def test_a_photo_threshold_never_gives_over_5_percent_of_clean_photos_a_region():
    """The tune set's threshold: the best mean F1 on the spliced photos while at most 5% of the
    clean ones (here 1 of 20) get a region; where every threshold gives more, none is drawn."""
    truth = np.zeros((8, 8), bool)
    truth[:4] = True
    spliced_scores = list(np.linspace(1.0, 2.0, 20))
    for high_clean, expected in ((1, 1.0), (2, float("inf"))):
        clean_scores = [5.0] * high_clean + [0.0] * (20 - high_clean)
        truths = [truth] * 20 + [np.zeros_like(truth)] * 20
        raw, masks = splice_results(spliced_scores + clean_scores, [truth] * 40)
        assert choose_threshold(truths, raw, masks) == expected
