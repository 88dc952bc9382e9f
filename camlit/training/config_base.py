"""`base: other.yaml` in a `--config` file: the other file's settings first, this file's over them.

jsonargparse reads a `config:` key inside a config file, but a group given after it (`data:`)
replaces the included group's settings instead of overriding some of them, so camlit layers the
files itself: `--config rehearsal.yaml`, whose `base` is `kaggle_gpu.yaml`, becomes
`--config kaggle_gpu.yaml --config <rehearsal.yaml without base>`, exactly as two files given in
that order. A relative base is relative to the file that names it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from camlit.errors import CamlitError

BASE_KEY = "base"


def expand_config_bases(args: list[str]) -> list[str]:
    """`args` with every `--config FILE` that names a base preceded by that base (recursively)."""
    expanded, rest = [], iter(args)
    for arg in rest:
        if arg == "--config":
            value = next(rest, None)
            expanded.extend(["--config"] if value is None else layered(value, ()))
        elif arg.startswith("--config="):
            expanded.extend(layered(arg.removeprefix("--config="), ()))
        else:
            expanded.append(arg)
    return expanded


def layered(value: str, seen: tuple[Path, ...]) -> list[str]:
    path = Path(value)
    try:
        settings = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise CamlitError(f"--config {value}: not UTF-8 text, so not a YAML config") from None
    except (OSError, yaml.YAMLError):
        return ["--config", value]  # not a readable YAML file: the CLI says what is wrong with it
    require_acyclic(settings, f"--config {value}")
    if settings is None:
        raise CamlitError(f"--config {value}: an empty file; give a config's options, or leave --config out")
    if not isinstance(settings, dict) or BASE_KEY not in settings:
        return ["--config", value]
    base = settings.pop(BASE_KEY)
    if not isinstance(base, str) or not base:
        raise CamlitError(f"--config {value}: `{BASE_KEY}` must name a config file, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise CamlitError(f"--config {value}: its {BASE_KEY} {base_path} is not a file")
    if base_path.resolve() in (*seen, path.resolve()):
        raise CamlitError(f"--config {value}: its {BASE_KEY} {base_path} leads back to itself")
    # The rest as a YAML string, which jsonargparse's --config takes as it takes a file's contents.
    return [*layered(str(base_path), (*seen, path.resolve())), "--config", yaml.safe_dump(settings, sort_keys=False)]


def require_acyclic(value, where: str, ancestors: tuple[int, ...] = ()) -> None:
    """Refuse a YAML alias that contains itself (`a: &x [*x]`): every reader of the values would
    recurse for ever (jsonargparse hung, or failed with RecursionError)."""
    if not isinstance(value, dict | list):
        return
    if id(value) in ancestors:
        raise CamlitError(f"{where}: a YAML alias contains itself")
    for item in value.values() if isinstance(value, dict) else value:
        require_acyclic(item, where, (*ancestors, id(value)))
