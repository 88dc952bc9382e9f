"""A run's saved config.yaml, restored by `--resume` as plain values only.

Run folders get shared like checkpoints, so the file is untrusted input. LightningCLI would import
and call any `class_path` it names, and a checkpoint `dirpath` or a profiler would write wherever
it says. So before the parser sees the file, every entry that names code, and every path that
would lead a write out of the run folder, is refused by its key:

- `class_path`/`init_args` anywhere, except camlit's own logger (TensorBoardLogger, plain options);
- `trainer.callbacks` and `trainer.plugins` other than empty (a bare name there is a class too);
- a checkpoint `dirpath`, or a checkpoint `filename` that is a path;
- `data.cache_dir` and `data.synthetic_root` (written by the cache build and the demo's data
  generation) outside the working directory, unless this command line gives them.

The data a run reads is recorded with absolute paths (record_data_paths). A run saved before that,
whose relative data paths would be read from another folder than the one it started in, is refused.

The log folder and `trainer.default_root_dir` are set from the run folder named on the command
line (camlit.training.resume). camlit never reads the run's hparams.yaml; the logger rewrites it.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import yaml

from camlit.errors import CamlitError
from camlit.training.config_base import UniqueKeyLoader, require_acyclic

# camlit's logger: TensorBoard's, in save_dir/lightning_logs/version_N. `--trainer.logger true`
# (Lightning's own choice of it) is read as this, so that camlit claims, locks and resumes the run.
DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
    # save_dir "." means --trainer.default_root_dir when that is given. No placeholder hp_metric
    # of -1 on TensorBoard's HPARAMS tab.
    "init_args": {"save_dir": ".", "name": "lightning_logs", "default_hp_metric": False},
}

TENSORBOARD = ("lightning.pytorch.loggers.TensorBoardLogger", "lightning.pytorch.loggers.tensorboard.TensorBoardLogger")
# TensorBoardLogger's and SummaryWriter's plain options; save_dir, name and version are set on resume.
LOGGER_OPTIONS = {"save_dir", "name", "version", "log_graph", "default_hp_metric", "prefix", "sub_dir", "comment"}
LOGGER_OPTIONS |= {"purge_step", "max_queue", "flush_secs", "filename_suffix"}
EMPTY_ONLY = ("trainer.callbacks", "trainer.plugins")
CHECKPOINTS = ("best_checkpoint", "periodic_checkpoint")
WRITTEN_DATA = ("data.cache_dir", "data.synthetic_root")
# What a run reads. Relative paths in its config.yaml were read from the working directory of each
# resume: one from another folder trained on that folder's data/ without a word.
READ_DATA = ("data.train_dir", "data.val_dir", "data.pseudo_labels", "data.pseudo_labels_dir")


def record_data_paths(config) -> None:
    """Make the paths of what the run reads absolute, so that its config.yaml names the same files
    from any folder. The folders it writes stay as given: under the working directory of each command."""
    for key in READ_DATA:
        if config.get(key):
            config[key] = os.path.abspath(config[key])


def read_run_config(path: Path, args: list[str]) -> tuple[str, dict]:
    """(the text of `path`, its values), once no entry in it names code or a place to write outside
    the run, nor data relative to another folder; `args` is the command line, whose own data folders
    are the user's choice."""
    try:
        text = path.read_bytes().decode("utf-8")
        config = yaml.load(text, UniqueKeyLoader)
    except UnicodeDecodeError:
        raise CamlitError(f"{path}: not UTF-8 text, so not a readable config") from None
    except yaml.YAMLError as error:
        raise CamlitError(f"{path}: not a readable config ({type(error).__name__})") from None
    require_acyclic(config, str(path))
    if not isinstance(config, dict):
        raise CamlitError(f"{path}: not a config (expected a mapping of options)")
    given = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    problem = first_problem(config, given)
    if problem:
        key, reason = problem
        raise CamlitError(
            f"{path}: {key} {reason}; --resume restores plain values only, so this run folder is refused "
            "(if you trust the file, remove the entry and give the option on the command line)"
        )
    refuse_relative_data_elsewhere(path, config, given)
    return text, config


def refuse_relative_data_elsewhere(path: Path, config: dict, given: set[str]) -> None:
    """A run saved before record_data_paths names its data relative to the folder it started in.
    Where its own relative log folder shows that was another, those paths would lead elsewhere."""
    logged = logged_run_dir(config, path.parent)
    if logged.is_absolute() or logged.resolve() == path.parent.resolve():
        return  # started here, or no telling: read as they always were
    data = config.get("data")
    for key in READ_DATA:
        value = data.get(key.partition(".")[2]) if isinstance(data, dict) else None
        if isinstance(value, str) and not Path(value).is_absolute() and f"--{key}" not in given:
            raise CamlitError(
                f"{path}: {key} {value} is relative to the folder the run was started in, and that was another "
                f"(the run's log folder was {logged} from there); resume from that folder, or give --{key}"
            )


def logged_run_dir(config: dict, version_dir: Path) -> Path:
    """The run folder as its saved logger options name it, relative ones from where it was started."""
    trainer = config.get("trainer")
    logger = trainer.get("logger") if isinstance(trainer, dict) else None
    saved = logger.get("init_args") if isinstance(logger, dict) else None
    saved = saved if isinstance(saved, dict) else {}
    return Path(str(saved.get("save_dir") or ".")) / str(saved.get("name") or "") / version_dir.name


def first_problem(config: dict, given: set[str]) -> tuple[str, str] | None:
    for key, value in entries(config):
        reason = entry_problem(key, value, given)
        if reason:
            return key, reason
    return None


def entries(value: Any, key: str = ""):
    """Every (dotted key, value) in the config, parents before their children; the logger whole."""
    yield key, value
    if key == "trainer.logger":
        return
    if isinstance(value, dict):
        for name, item in value.items():
            yield from entries(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from entries(item, f"{key}[{index}]")


def entry_problem(key: str, value: Any, given: set[str]) -> str | None:
    if key == "trainer.logger":
        return logger_problem(value)
    if key in EMPTY_ONLY and value not in (None, []):
        return "names objects to create"
    if isinstance(value, dict) and ({"class_path", "init_args"} & value.keys()):
        return f"names code to run ({value.get('class_path', 'init_args')})"
    group, _, option = key.partition(".")
    if group in CHECKPOINTS and option == "dirpath" and value is not None:
        return f"sends checkpoints to {value}, outside the run folder"
    if group in CHECKPOINTS and option == "filename" and value is not None and not is_plain_name(str(value)):
        return f"is a path ({value}), not a file name in the run folder"
    if key in WRITTEN_DATA and value is not None and f"--{key}" not in given and not inside_working_dir(value):
        return f"names {value}, outside the working directory, to write into"
    return None


def resume_command(run_dir: str | Path, config: Any) -> str:
    """`--resume RUN` as a resume from this working directory accepts it: with the folders the run
    writes into outside it (a cache on a node's local disk) given again, as entry_problem asks."""
    parts = ["--resume", str(run_dir)]
    for key in WRITTEN_DATA:
        group, option = key.split(".")
        value = getattr(getattr(config, group, None), option, None)
        if value is not None and not inside_working_dir(value):
            parts += [f"--{key}", str(value)]
    command = shlex.join(parts)
    try:
        read_run_config(Path(run_dir) / "config.yaml", parts)
    except OSError:
        pass  # no config.yaml yet: the resume names that itself
    except CamlitError as error:
        # A callback or another logger given to the new run: said now, not at the requeued job's start.
        command += f", once the run's config.yaml is fit for it ({error})"
    return command


def logger_problem(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, dict) or value.get("class_path") not in TENSORBOARD:
        return f"names code to run ({value.get('class_path') if isinstance(value, dict) else value})"
    options = value.get("init_args") or {}
    unknown = sorted(set(options) - LOGGER_OPTIONS)
    if unknown:
        return f"has options other than camlit's ({', '.join(map(str, unknown))})"
    if any(isinstance(v, dict | list) for v in options.values()):
        return "has options that are not plain values"
    if options.get("sub_dir") is not None or not is_plain_name(str(options.get("filename_suffix") or "x")):
        return "puts log files in other folders (sub_dir or filename_suffix)"
    return None


def is_plain_name(name: str) -> bool:
    return "/" not in name and "\\" not in name and name not in ("", ".", "..")


def inside_working_dir(path: Any) -> bool:
    """A relative path, or an absolute one under the working directory (the resume command printed
    after a stop, given in the run's folder, named an absolute cache_dir there)."""
    path = Path(str(path))
    return ".." not in path.parts and (not path.is_absolute() or path.is_relative_to(Path.cwd()))
