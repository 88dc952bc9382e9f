import json
from argparse import Namespace

import numpy as np
import pytest

import camlit.forensics.measure
from camlit.errors import CamlitError
from camlit.forensics.measure import main, require_work_for
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
    for folder in ("sets/unknown", "sets/splice", "known"):
        (tmp_path / folder).mkdir(parents=True)
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


def measuring_args(tmp_path, ckpt, *extra) -> list[str]:
    for folder in ("sets/unknown", "sets/splice", "known"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    argv = ["--ckpt_path", str(ckpt), "--sets", str(tmp_path / "sets"), "--known", str(tmp_path / "known")]
    return [*argv, "--work", str(tmp_path / "work"), "--json", str(tmp_path / "r.json"), *extra]


@pytest.mark.parametrize(
    ("extra", "missing", "message"),
    [
        (("--scores", "msp,bogus"), None, "error: --scores: unknown 'bogus'; choose from"),
        (("--only", "splices"), "splice", "no splice/ folder in it"),
        (("--only", "unknown"), "unknown", "no unknown/ folder in it"),
    ],
)
def test_what_the_parts_need_is_checked_before_any_model_work(ckpt, tmp_path, capsys, extra, missing, message):
    """An unknown score, or a set without the folder measured, was a traceback after the model ran."""
    argv = measuring_args(tmp_path, ckpt, *extra)
    if missing:
        (tmp_path / "sets" / missing).rmdir()
    assert message in one_error_line(capsys, argv)
    assert not (tmp_path / "work").exists()


def test_a_mistake_found_while_measuring_is_one_error_line(ckpt, tmp_path, capsys, monkeypatch):
    def refuses(*args):
        raise CamlitError("--known: a mistake found in the photos")

    monkeypatch.setattr(camlit.forensics.measure, "measure_unknown", refuses)
    line = one_error_line(capsys, measuring_args(tmp_path, ckpt, "--only", "unknown"))
    assert line == "error: --known: a mistake found in the photos"


def test_figures_that_are_not_numbers_are_written_as_null(ckpt, tmp_path, capsys, monkeypatch):
    """An AUROC of one kind of photo only is NaN, which Python wrote and no JSON parser reads."""
    monkeypatch.setattr(camlit.forensics.measure, "measure_unknown", lambda *args: {"auroc": float("nan")})
    main(measuring_args(tmp_path, ckpt, "--only", "unknown"))
    written = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert written["unknown"] == {"auroc": None}
    assert "NaN" not in capsys.readouterr().out


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


def test_a_work_folder_is_reused_only_for_the_checkpoint_and_options_it_was_made_from(tmp_path):
    """Another model's tile maps and rows, kept under the same --work, were measured as this one's."""
    for name in ("a.ckpt", "b.ckpt"):
        (tmp_path / name).write_bytes(name.encode())
    work = tmp_path / "work"
    work.mkdir()
    args = Namespace(
        ckpt_path=str(tmp_path / "a.ckpt"), work=str(work), sets=str(tmp_path), tune=None, known=str(tmp_path),
        train_dir=None, tune_unknown=None, crops=10, crop_grid=False, limit=None, only="unknown",
    )  # fmt: skip
    require_work_for(args)
    (work / "val.npz").write_bytes(b"kept")
    require_work_for(args)  # the same: reused
    with pytest.raises(CamlitError, match="another checkpoint_sha256;"):
        require_work_for(Namespace(**{**vars(args), "ckpt_path": str(tmp_path / "b.ckpt")}))
    # The splices part keeps its own outputs: measured next, its options are added to the record.
    require_work_for(Namespace(**{**vars(args), "only": "splices", "tune": str(tmp_path), "crops": 4}))
    with pytest.raises(CamlitError, match="another crops, tune;"):
        require_work_for(Namespace(**{**vars(args), "only": None, "crops": 4}))
    (work / "measure_key.json").unlink()
    with pytest.raises(CamlitError, match="holds files, but not measure_key.json"):
        require_work_for(args)
    assert (work / "val.npz").read_bytes() == b"kept"
