"""The `camlit` command: one front door to fit, predict, evaluate, prepare, synthetic, inspect,
calibrate and benchmark.

Each subcommand is the module's own `main`, which parses the rest of the command line (with
jsonargparse: `--option_name value`) and ends a user's mistake as one `error:` line, status 2.
`scripts/*.py` run the same mains from a checkout.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from camlit.errors import CamlitError, exit_on_user_error
from camlit.termination import ending_as_it_was, exit_on_signal

# name -> (module, function, one-line summary)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "fit": ("camlit.training.cli", "main", "train, or resume a run (LightningCLI: --config, --data.*, --model.*)"),
    "predict": ("camlit.inference.predict", "main", "write a Kaggle submission CSV for a folder of images"),
    "evaluate": ("camlit.inference.evaluate", "main", "score a checkpoint on labelled images"),
    "prepare": ("camlit.data.commands", "prepare_main", "cut photos into Kaggle's manipulated crops"),
    "synthetic": ("camlit.data.commands", "synthetic_main", "write the synthetic ten-camera data set"),
    "inspect": ("camlit.forensics.inspect_command", "main", "camera map of one photo: tiles, reliability, splice mask"),
    "calibrate": ("camlit.forensics.calibrate", "main", "calibrate unknown-camera rejection beside a checkpoint"),
    "benchmark": ("camlit.benchmark.command", "main", "speed, overhead and memory ratios against their targets"),
}


def usage() -> str:
    lines = ["usage: camlit <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, _, summary) in COMMANDS.items()]
    lines += ["", "`camlit <command> --help` lists every option of that command."]
    return "\n".join(lines)


def command(name: str) -> Callable:
    """The command's main, imported with SIGTERM and Ctrl-C already handled: the import (torch,
    Lightning) takes seconds, and a signal meanwhile printed a KeyboardInterrupt traceback from
    inside it, or ended the process without a word."""
    module, function, _ = COMMANDS[name]
    with exit_on_signal("nothing done"):
        return getattr(importlib.import_module(module), function)


def run(name: str, argv: list[str] | None = None) -> None:
    """Run command `name` on `argv`, or on the process's command line (`scripts/*.py`)."""
    finish(command(name), list(sys.argv[1:] if argv is None else argv), whole_process=argv is None)


def finish(main: Callable, args: list[str], whole_process: bool) -> None:
    """`main(args)`; where it is the whole process's work, a signal after its last line ends the
    process with the status it was ending with (a caller in the same process keeps its handlers)."""
    if not whole_process:
        main(args)
        return
    try:
        main(args)
    except SystemExit as ending:
        ending_as_it_was(ending.code)
        raise
    ending_as_it_was(0)


def main(argv: list[str] | None = None) -> None:
    whole_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    name, rest = argv[0], argv[1:]
    with exit_on_user_error():
        if name not in COMMANDS:
            raise CamlitError(f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    # sys.argv stays as it is: Lightning starts a DDP run's other processes with it.
    finish(command(name), rest, whole_process)
