"""`base: other.yaml` in a `--config` file: the other file's settings first, this file's over them.

jsonargparse reads a `config:` key inside a config file, but a group given after it (`data:`)
replaces the included group's settings instead of overriding some of them, so camlit layers the
files itself: `--config rehearsal.yaml`, whose `base` is `kaggle_gpu.yaml`, becomes
`--config kaggle_gpu.yaml --config <rehearsal.yaml without base>`, exactly as two files given in
that order. A relative base is relative to the file that names it.

A mistake in a config ends in a line naming its file (NamedConfigErrors), also where camlit gives
the parser a config's text (ConfigText): the rest of a file with a base, a run's config.yaml.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace

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
        text = path.read_bytes().decode("utf-8")
        settings = yaml.load(text, UniqueKeyLoader)
    except UnicodeDecodeError:
        raise CamlitError(f"--config {value}: not UTF-8 text, so not a YAML config") from None
    except OSError:
        return ["--config", value]  # not a readable file, or a config's text: the CLI says what is wrong
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CamlitError(
            f"--config {value}: not valid YAML ({getattr(error, 'problem', None) or error}{where})"
        ) from None
    require_acyclic(settings, f"--config {value}")
    if settings is None:
        raise CamlitError(f"--config {value}: an empty file; give a config's options, or leave --config out")
    if not isinstance(settings, dict):
        raise CamlitError(f"--config {value}: not a config (expected a mapping of options)")
    if BASE_KEY not in settings:
        # A pipe (`--config <(...)`, /dev/stdin) is read once: the parser found it empty after this read.
        return ["--config", value if path.is_file() else ConfigText(text, f"--config {value}")]
    base = settings.pop(BASE_KEY)
    if not isinstance(base, str) or not base:
        raise CamlitError(f"--config {value}: `{BASE_KEY}` must name a config file, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise CamlitError(f"--config {value}: its {BASE_KEY} {base_path} is not a file")
    if base_path.resolve() in (*seen, path.resolve()):
        raise CamlitError(f"--config {value}: its {BASE_KEY} {base_path} leads back to itself")
    # The rest as a YAML string, which jsonargparse's --config takes as it takes a file's contents.
    rest = ConfigText(yaml.safe_dump(settings, sort_keys=False), f"--config {value}")
    return [*layered(str(base_path), (*seen, path.resolve())), "--config", rest]


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping: the reader keeps the last
    and drops the first without a word (a second `trainer:` block undid every setting of the first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            # A merge (`<<: *defaults`) brings keys that this mapping's own may override.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    message = f"the key {key_node.value!r} given twice, where the second would undo the first"
                    raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def require_acyclic(value, where: str, ancestors: tuple[int, ...] = ()) -> None:
    """Refuse a YAML alias that contains itself (`a: &x [*x]`): every reader of the values would
    recurse for ever (jsonargparse hung, or failed with RecursionError)."""
    if not isinstance(value, dict | list):
        return
    if id(value) in ancestors:
        raise CamlitError(f"{where}: a YAML alias contains itself")
    for item in value.values() if isinstance(value, dict) else value:
        require_acyclic(item, where, (*ancestors, id(value)))


class ConfigText(str):
    """A config's text for --config that knows the file it came from (`source`), for error lines."""

    def __new__(cls, text: str, source: str):
        config = super().__new__(cls, text)
        config.source = source
        return config


# The key in jsonargparse's messages about a value: a wrong type, a key missing under a value that
# is not a group (`data: 5`), an unknown key.
KEY_IN_MESSAGE = re.compile(r"""[Kk]ey "([^"]+)"|Group '([^']+)' does not accept option '([^']+)'|Option '([^']+)'""")


class NamedConfigErrors:
    """A parser whose mistakes about a key name the last config that sets it, unless the command
    line gives the key too (jsonargparse may check an option before a later config replaces it)."""

    options: list[str] = []
    configs: list[tuple[str, Any]] = []  # (the file, its settings) of each --config

    def parse_args(self, args=None, *more, **kwargs):
        args = list(sys.argv[1:] if args is None else args)
        self.options, self.configs, values = [], [], iter(args)
        for arg in values:
            option, equals, value = arg.partition("=")
            if option == "--config":
                value = value if equals else next(values, "")
                self.configs.append((getattr(value, "source", f"--config {value}"), read_settings(value)))
            elif option.startswith("--"):
                self.options.append(option[2:])
        groups = group_names(self)
        for source, settings in self.configs:
            for key, value in settings.items() if isinstance(settings, dict) else ():
                if key in groups and not isinstance(value, dict):
                    # jsonargparse said `Unexpected config: data:` or `Key "data.classes" not found`.
                    super().error(f'{source}: Key "{key}" holds {value!r} where a group of options belongs')
        # YAML's C reader, which the parser uses, takes no subclass of str.
        return super().parse_args([str(arg) for arg in args], *more, **kwargs)

    def error(self, message: str, *args, **kwargs):
        match = KEY_IN_MESSAGE.search(str(message))
        key = match and (match[1] or match[4] or f"{match[2]}.{match[3]}")
        if key and not any(f"{key}.".startswith(f"{option}.") for option in self.options):
            setting = [name for name, settings in self.configs if sets(settings, key.split("."))]
            message = f"{setting[-1]}: {message}" if setting else message
        return super().error(message, *args, **kwargs)


def group_names(parser) -> set[str]:
    """The parser's top-level keys that hold a group of options (`data`, `trainer`, `best_checkpoint`)."""
    defaults = parser.get_defaults().items(branches=True)
    return {key for key, value in defaults if "." not in key and isinstance(value, Namespace)}


def read_settings(value: str) -> Any:
    """A --config's settings, from its file or its text; None where none can be read."""
    try:
        is_file = not isinstance(value, ConfigText) and Path(value).is_file()  # a long text is no file name
        return yaml.safe_load(Path(value).read_text() if is_file else str(value))
    except (OSError, ValueError, yaml.YAMLError):
        return None


def sets(settings: Any, parts: list[str]) -> bool:
    """Whether `settings` holds the key of these parts, or a value where one of its groups should be (`data: 5`)."""
    for part in parts:
        if not isinstance(settings, dict) or part not in settings:
            return False
        settings = settings[part]
        if not isinstance(settings, dict):
            return True
    return True
