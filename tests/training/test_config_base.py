"""`base:` in a config file layers it on another; a monitor that validation cannot log is refused early."""

import os
import threading

import pytest
import torch
import yaml
from conftest import fit_args, one_error_line

from camlit.training.cli import main
from camlit.training.config_base import expand_config_bases


def write(path, settings):
    path.write_text(yaml.safe_dump(settings))
    return path


def test_a_base_comes_first_and_the_file_overrides_it(tmp_path):
    write(tmp_path / "gpu.yaml", {"data": {"crop_size": 224, "batch_size": 64, "load_ratio": 0.25}})
    (tmp_path / "sub").mkdir()
    cpu = write(tmp_path / "sub" / "cpu.yaml", {"base": "../gpu.yaml", "data": {"crop_size": 64}})
    args = expand_config_bases(["--config", str(cpu), "--data.batch_size", "8"])
    assert args[:2] == ["--config", str(tmp_path / "sub" / "../gpu.yaml")]
    assert args[2] == "--config" and yaml.safe_load(args[3]) == {"data": {"crop_size": 64}}
    assert args[4:] == ["--data.batch_size", "8"]
    assert expand_config_bases([f"--config={cpu}"]) == args[:4]
    # A file without a base, or not a file at all, is left to the CLI.
    assert expand_config_bases(["--config", str(tmp_path / "gpu.yaml")]) == ["--config", str(tmp_path / "gpu.yaml")]
    assert expand_config_bases(["--config", "{data: {crop_size: 8}}"]) == ["--config", "{data: {crop_size: 8}}"]


def test_the_layered_config_parses_as_two_files_would(tmp_path, flat_tree, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "base.yaml", {"data": {"crop_size": 16, "load_ratio": 0.5}, "trainer": {"max_epochs": 7}})
    top = write(tmp_path / "top.yaml", {"base": "base.yaml", "data": {"load_ratio": 0.75}})
    cli = main(["--config", str(top), *fit_args(flat_tree, "--trainer.fast_dev_run", "true")])
    data = cli.datamodule.hparams
    # crop_size comes from fit_args (later on the line), load_ratio from top over base, max_epochs from base.
    assert (data.crop_size, data.load_ratio, cli.config.trainer.max_epochs) == (32, 0.75, 7)


def test_a_missing_or_circular_base_is_one_error_line(tmp_path, capsys):
    lost = write(tmp_path / "lost.yaml", {"base": "nowhere.yaml"})
    line = one_error_line(capsys, lambda: main(["--config", str(lost)]))
    assert "lost.yaml" in line and "nowhere.yaml is not a file" in line
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    assert "leads back to itself" in one_error_line(capsys, lambda: main(["--config", str(tmp_path / "a.yaml")]))


@pytest.mark.parametrize(
    ("text", "message"),
    [(b"\xe9t\xe9: 1\n", "not UTF-8 text"), (b"a: &x [*x]\n", "a YAML alias contains itself"),
     (b"model: &x {lr: 0.01, x: *x}\n", "a YAML alias contains itself"),
     (b"trainer:\n  max_epochs: 3\ndata:\n  batch_size: 4\ntrainer:\n  max_steps: 2\n",
      "not valid YAML (the key 'trainer' given twice, where the second would undo the first at line 5")],
    ids=["latin-1", "list_in_itself", "mapping_in_itself", "a_key_twice"],
)  # fmt: skip
def test_a_config_no_reader_can_take_is_one_error_line(tmp_path, flat_tree, monkeypatch, capsys, text, message):
    """A traceback each (UnicodeDecodeError, RecursionError), a hang, or (a key given twice) the
    first block's settings dropped without a word: as --config, as a base, and as a run folder's
    config.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_bytes(text)
    line = one_error_line(capsys, lambda: main(["--config", "bad.yaml", *fit_args(flat_tree)]))
    assert line.startswith("error: --config bad.yaml: " + message)
    write(tmp_path / "top.yaml", {"base": "bad.yaml"})
    assert message in one_error_line(capsys, lambda: main(["--config", "top.yaml", *fit_args(flat_tree)]))
    run = tmp_path / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": {}, "global_step": 1}, run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_bytes(text)
    line = one_error_line(capsys, lambda: main(["--resume", str(run)]))
    assert line.startswith(f"error: {run / 'config.yaml'}: ") and (message in line or "not a readable config" in line)
    assert (run / "config.yaml").read_bytes() == text


@pytest.mark.parametrize("monitor", ["val/acc_weighted", "val/acc/jpeg70"])
def test_a_monitor_validation_cannot_log_is_refused_before_training(monitor, flat_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = fit_args(flat_tree, "--trainer.max_epochs", "1", "--best_checkpoint.monitor", monitor)
    line = one_error_line(capsys, lambda: main([*args, "--data.val_manipulations", "[]"]))
    assert f"--best_checkpoint.monitor {monitor}" in line and "--data.val_manipulations" in line
    assert not (tmp_path / "lightning_logs").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [("data:\n  classes: [a, b\n", "not valid YAML (expected ',' or ']', but got '<stream end>' at line"),
     ("- 1\n", "not a config (expected a mapping of options)"),
     ("data: 5\n", 'Key "data" holds 5 where a group of options belongs'),
     ("data:\n", 'Key "data" holds None where a group of options belongs'),
     ("data:\n  bogus: 1\n", "Group 'data' does not accept option 'bogus'"),
     ("data:\n  crop_size: big\n", "data.crop_size: expected an integer, got big"),
     ("bogus: 1\n", "Option 'bogus' is not accepted"),
     ("trainer: 5\n", 'Key "trainer" holds 5 where a group of options belongs'),
     ("best_checkpoint: 5\n", 'Key "best_checkpoint" holds 5')],
    ids=["yaml_syntax", "not_a_mapping", "not_a_group", "empty_group", "unknown_key", "wrong_type", "unknown_group",
         "trainer_value", "callback_value"],
)  # fmt: skip
def test_a_mistake_in_a_config_names_its_file(tmp_path, monkeypatch, capsys, text, message):
    """The lines named the key alone (`Key "data.classes" not found in namespace.`), never the file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text(text)
    line = one_error_line(capsys, lambda: main(["--config", "mine.yaml"]))
    assert line.startswith("error: --config mine.yaml: ") and message in line
    # As the rest of a file with a base, which camlit gives the parser as text (a list holds no base).
    if not text.startswith("- "):
        write(tmp_path / "fine.yaml", {"data": {"crop_size": 16}})
        (tmp_path / "top.yaml").write_text(f"base: fine.yaml\n{text}")
        line = one_error_line(capsys, lambda: main(["--config", "top.yaml"]))
        assert line.startswith("error: --config top.yaml: ") and message in line
    # A run's config.yaml, which --resume gives the parser as text.
    run = tmp_path / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "global_step": 1}, run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_text(f"# {'a run saved long ago ' * 20}\n{text}")  # too long for a file name
    line = one_error_line(capsys, lambda: main(["--resume", str(run)]))
    assert line.startswith(f"error: {run / 'config.yaml'}: ")


def test_a_mistake_on_the_command_line_names_no_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "mine.yaml", {"data": {"crop_size": 16}})
    for args in (["--data.crop_size", "big", "--config", "mine.yaml"], ["--config", "mine.yaml", "--bogus", "1"]):
        assert not one_error_line(capsys, lambda args=args: main(args)).startswith("error: --config")


def test_a_config_read_from_a_pipe_is_read_once(tmp_path, capsys):
    """`--config <(...)` or /dev/stdin: camlit's own read emptied the pipe, and the parser then
    failed with `error: Unexpected config:`."""
    pipe = tmp_path / "config.fifo"
    os.mkfifo(pipe)
    writer = threading.Thread(target=lambda: pipe.write_text("trainer:\n  max_epochs: 3\n"))
    writer.start()
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(pipe), "--print_config"])
    writer.join()
    assert exit_info.value.code == 0
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["max_epochs"] == 3
