import pytest
from measure_forensics import main


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
    assert not (tmp_path / "r.json").exists()
