"""The `camlit` front door: every command behind it, one flag style, one way to fail."""

import re
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, caught_signals, wait_for

from camlit import console
from camlit.data.commands import prepare_parser, synthetic_parser
from camlit.forensics.calibrate import build_parser as calibrate_parser
from camlit.forensics.inspect_command import build_parser as inspect_parser
from camlit.inference.evaluate import build_parser as evaluate_parser
from camlit.inference.predict import build_parser as predict_parser


def test_help_names_every_command(capsys):
    console.main(["--help"])
    out = capsys.readouterr().out
    for name in ("fit", "predict", "evaluate", "prepare", "synthetic", "benchmark"):
        assert re.search(rf"^  {name} ", out, re.MULTILINE), name


def test_an_unknown_command_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        console.main(["trian"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: unknown command 'trian'; "
        "choose from fit, predict, evaluate, prepare, synthetic, inspect, calibrate, benchmark"
    ]


@pytest.mark.parametrize(
    "parser", [predict_parser, evaluate_parser, prepare_parser, synthetic_parser, calibrate_parser, inspect_parser]
)
def test_every_flag_is_jsonargparse_style(parser):
    flags = [flag for action in parser()._actions for flag in action.option_strings if flag.startswith("--")]
    assert flags and all(re.fullmatch(r"--[a-z0-9_]+", flag) for flag in flags), flags


def test_the_console_runs_the_same_mains_as_the_scripts(capsys):
    for name in ("predict", "evaluate", "prepare", "synthetic", "inspect", "calibrate"):
        with pytest.raises(SystemExit) as exit_info:
            console.main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: camlit {name}" in capsys.readouterr().out


def test_fit_help_through_python_m_camlit_lists_the_trainer_data_and_model_options():
    result = subprocess.run(
        [sys.executable, "-m", "camlit", "fit", "--help"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    options = ("--data.crop_size", "--model.optimizer", "--trainer.max_epochs", "--ckpt_path", "--resume", "--config")
    assert all(option in result.stdout for option in options), result.stdout


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
@pytest.mark.parametrize("entry", [["-m", "camlit", "evaluate"], ["scripts/predict.py"]], ids=["camlit", "script"])
def test_a_signal_while_the_command_imports_is_its_one_line(entry, signum):
    """The command's module (torch, Lightning) takes seconds to import, before the command's own
    handlers: a Ctrl-C there printed a KeyboardInterrupt traceback from inside torch, and SIGTERM
    ended the process without a word."""
    process = subprocess.Popen(
        [sys.executable, *entry, "--help"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: signal.SIGTERM in caught_signals(process.pid), timeout=1)  # then while torch imports
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signum, stderr[-2000:]
    assert stderr.splitlines() == [f"stopped by {signal.Signals(signum).name}: nothing done"]


def test_the_installed_command_is_this_main():
    import importlib
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["camlit"].partition(":")
    assert getattr(importlib.import_module(module), function) is console.main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--config", "nope.yaml"], "nope.yaml"),
        (["fit", "--model.arch", "resnet7"], "model.arch"),
        (["fit", "--model.input_filter", "nosuch"], "model.input_filter"),
        (["predict", "--max_pixels", "0"], "max_pixels"),
        (["prepare", "--size", "abc"], "size"),
        (["calibrate", "--ckpt_path", "m.ckpt", "--crops", "0"], "--crops: must be 1 or more, not 0"),
        (["inspect", "--batch_size", "abc"], "--batch_size"),
    ],
)
def test_a_parser_mistake_is_one_error_line_without_the_usage(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        console.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and message in err, err


# atexit runs its callbacks last registered first. The waits are in short sleeps: a signal that
# another thread (cv2's, torch's) takes does not wake the main thread's sleep.
SLOW_EXITS = {
    # A slow atexit callback of a library, registered after camlit's: the line, then the wait.
    "atexit": "import atexit, time, camlit; atexit.register(lambda: [time.sleep(0.05) for _ in range(600)]); "
    "atexit.register(print, 'shutting down'); ",
    # The teardown after every atexit callback (the line comes after camlit's), where the
    # interpreter had put the default handlers back: a slow finaliser of the script's.
    "teardown": "import atexit, time; atexit.register(print, 'shutting down')\n"
    "class Slow:\n    def __del__(self, sleep=time.sleep):\n        [sleep(0.05) for _ in range(60)]\n"
    "slow = Slow()\n",
}


@pytest.mark.parametrize("where", list(SLOW_EXITS))
@pytest.mark.parametrize("signals", [[signal.SIGINT, signal.SIGINT], [signal.SIGTERM]], ids=["ctrl_c_twice", "sigterm"])
def test_a_signal_after_the_commands_last_line_ends_it_as_it_was_ending(signals, where):
    """While the interpreter shut down, a second Ctrl-C printed "Exception ignored in atexit
    callback" and a traceback, and a signal ended a finished command by the signal (a predict whose
    CSV was whole exited 143)."""
    code = SLOW_EXITS[where] + (
        "import sys; sys.argv = ['camlit', 'evaluate', '--help']; from camlit.console import main; main()"
    )
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = iter(process.stdout.readline, "")
        assert any(line == "shutting down\n" for line in lines)
        for signum in signals:
            process.send_signal(signum)
            time.sleep(0.2)
        _, stderr = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0 and stderr == "", stderr[-2000:]
