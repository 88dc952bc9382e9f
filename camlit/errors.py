"""The one error type that entry points print as a single line instead of a traceback, the
command-line parsers that end a mistake the same way, and the one warning of Lightning's own
that no user can act on, kept off the console."""

import argparse
import errno
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import jsonargparse


class CamlitError(ValueError):
    """A mistake in the user's input: a file, a folder, an argument. The message names it."""

    def __init__(self, message: str = "", *args):
        # A DataLoader worker's error comes back as "Caught <type> in DataLoader worker process N.
        # Original Traceback ...": keep its last line, the message the user needs.
        if isinstance(message, str) and message.startswith("Caught ") and "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message, *args)


def not_a_file(path: Path) -> str:
    """What stands at `path` where a regular file was wanted, in words for an error line."""
    if path.is_symlink() and not path.exists():
        return "no such file (a link that leads nowhere)"
    return "a folder" if path.is_dir() else "not a regular file" if path.exists() else "no such file"


def not_a_folder(path: str | os.PathLike) -> str:
    """What stands at `path` where a folder was wanted, in words for an error line."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "no such folder (a link that leads nowhere)"
    return "a file, not a folder" if path.exists() else "no such folder"


@contextmanager
def disk_full_as_user_error(intact: str, where: str | os.PathLike | None = None) -> Iterator[None]:
    """A full disk ends as one line naming the file that did not fit (else `where`), and what is still whole."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise CamlitError(f"{error.filename or where or 'a file'}: no space left on device; {intact}") from None


@contextmanager
def exit_on_user_error(*also: type[Exception]) -> Iterator[None]:
    """Every command's ending for a user's mistake (a CamlitError, or one of `also`): one line
    `error: ...` on stderr and exit status 2, no traceback. A stdout that closes or fills meanwhile
    (`| head -1`, `> /dev/full`) costs only what was printed there (StdoutThatMayClose)."""
    with stdout_that_may_close():
        yield from ends_user_errors(also)


def ends_user_errors(also: tuple[type[Exception], ...]) -> Iterator[None]:
    try:
        yield
    except (CamlitError, *also) as error:
        # One line even when the message quotes a library's several-line one.
        print("error: " + " ".join(line.strip() for line in str(error).splitlines() if line.strip()), file=sys.stderr)
        raise SystemExit(2) from None
    except (OSError, RuntimeError) as error:
        named = unusable_path(error)
        if named is None:
            raise
        print(f"error: {named}", file=sys.stderr)
        raise SystemExit(2) from None


class StdoutThatMayClose:
    """sys.stdout, whose first failed write or flush (a reader gone: EPIPE; a full disk) is kept in
    `lost` instead of raised, and every later one skipped: the command goes on, its files are
    written and its exit status is its own. It stopped with a traceback and exit status 1, before
    a predict with unreadable images said so or gave status 2."""

    def __init__(self, stream):
        self.stream = stream
        self.lost: OSError | None = None

    def write(self, text: str) -> int:
        if self.lost is None:
            try:
                self.stream.write(text)
            except OSError as error:
                self.lost = error
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self.stream.flush()
            except OSError as error:
                self.lost = error

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


@contextmanager
def stdout_that_may_close() -> Iterator[None]:
    if sys.stdout is None or isinstance(sys.stdout, StdoutThatMayClose):
        yield
        return
    original = sys.stdout
    sys.stdout = wrapped = StdoutThatMayClose(original)
    try:
        yield
    finally:
        wrapped.flush()
        sys.stdout = original
        if wrapped.lost is not None:
            # What is still buffered goes nowhere, so the interpreter's last flush cannot fail too.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), original.fileno())
            except (OSError, ValueError):
                pass  # not a file descriptor (a test's capture)
            print(f"warning: stdout: {wrapped.lost.strerror}; what camlit printed there is lost", file=sys.stderr)


# A path no file can have, from any option: a name part over the file system's limit (255 bytes),
# or links that lead round in a loop. pathlib and os raise them wherever the path is first used.
UNUSABLE_PATH = {
    errno.ENAMETOOLONG: "a name too long for the file system",
    errno.ELOOP: "links that lead round in a loop",
}
SYMLINK_LOOP = re.compile(r"^Symlink loop from '(?P<path>.*)'$")  # pathlib.Path.resolve's, on Python 3.11 and 3.12


def unusable_path(error: BaseException) -> str | None:
    """`path: what is wrong` for an error that a path no file can have raised, else None."""
    if isinstance(error, OSError) and error.errno in UNUSABLE_PATH:
        return f"{error.filename}: {UNUSABLE_PATH[error.errno]}" if error.filename else UNUSABLE_PATH[error.errno]
    match = SYMLINK_LOOP.match(str(error)) if type(error) is RuntimeError else None
    return f"{match['path']}: {UNUSABLE_PATH[errno.ELOOP]}" if match else None


# The options whose empty value means something: `--tta_manipulations ""` is no manipulation.
EMPTY_MEANS_NONE = frozenset({"--tta_manipulations"})


def refuse_empty_values(args: Sequence[str]) -> None:
    """An option given an empty value (`--output ""`, `--output=`, an unset shell variable) is a
    mistake: an empty path is read as the working folder, and `fit --resume ""` as no --resume at
    all, a new run from scratch."""
    for index, arg in enumerate(args):
        if not arg.startswith("--") or arg == "--":
            continue
        name, equals, value = arg.partition("=")
        given = value if equals else (args[index + 1] if index + 1 < len(args) else None)
        if given is not None and not given.strip() and name not in EMPTY_MEANS_NONE:
            raise CamlitError(f"{name}: an empty value; give one")


OPTION_NAME = re.compile(r"--[A-Za-z0-9_.-]+")


def underscored(args: Sequence[str]) -> list[str]:
    """Options spelt with dashes (`--images-per-camera`) as camlit spells them (`--images_per_camera`):
    no camlit option has a dash in its name, and scripts written for the dashed spelling keep working."""
    spelt: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            return spelt + list(args[index:])
        name, equals, value = arg.partition("=")
        if OPTION_NAME.fullmatch(name):  # not a value such as benchmark's `--project "--config X"`
            arg = "--" + name[2:].replace("-", "_") + equals + value
        spelt.append(arg)
    return spelt


NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


JSONARGPARSE_KEY = re.compile(r'Parser key "(?P<key>[^"]+)":')
# How jsonargparse names the types it expected (`Expected a <class 'int'>`), in words.
TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "NoneType": "null", "str": "text"}


def plain_message(message: str) -> str:
    """jsonargparse's message in the user's terms: `Parser key "size": Expected a <class 'int'>. Got
    value: abc` as `--size: expected an integer, got abc`; `required: input` as `required: --input`."""
    required = "the following arguments are required: "
    if message.startswith(required):
        names = [name.strip() for name in message[len(required) :].split(",")]
        return required + ", ".join(name if name.startswith("-") else f"--{name}" for name in names)
    match = JSONARGPARSE_KEY.search(message)
    value = re.search(r"(?:Given value|Got value): (.*)$", message, re.DOTALL)
    types = re.findall(r"Expected a <class '(?:[\w.]+\.)?(\w+)'>", message)
    choices = re.search(r"Expected a typing\.Literal\[(.*?)\]", message)
    if choices:
        types.append("one of " + ", ".join(name.strip(" '\"") for name in choices[1].split(",")))
    if not match or not value or not types:
        return message
    # On the command line the key is an option; in a config (named before it) a key of the file.
    key = match["key"] if match.start() else f"--{match['key']}"
    wanted = " or ".join(dict.fromkeys(TYPE_WORDS.get(name, name) for name in types))
    return f"{message[: match.start()]}{key}: expected {wanted}, got {value[1].strip()}"


class OneLineErrors:
    """A parser whose mistakes end as one `error:` line and exit status 2, without the usage block
    (`--help` shows that). A parser told to raise instead (jsonargparse does so internally) still raises."""

    def parse_args(self, args=None, namespace=None, *more, **kwargs):
        args = underscored(list(sys.argv[1:] if args is None else args))
        try:
            refuse_empty_values(args)
        except CamlitError as error:
            self.error(str(error))
        return super().parse_args(args, namespace, *more, **kwargs)

    def error(self, message: str, *args, **kwargs):
        if not getattr(self, "exit_on_error", True):
            return super().error(message, *args, **kwargs)
        # jsonargparse's messages span several lines: the key, then the reason.
        line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
        print("error: " + plain_message(line), file=sys.stderr)
        raise SystemExit(2)


class CommandParser(OneLineErrors, jsonargparse.ArgumentParser):
    """The parser of camlit's commands: `--option_name value`, configs and types as jsonargparse reads them."""


class PlainParser(OneLineErrors, argparse.ArgumentParser):
    """The same command style and errors for commands whose options are plain argparse ones."""

    def parse_known_args(self, args=None, namespace=None):
        # argparse reads -1e3 or -inf (not -1 or -0.5) after an option as another option and says
        # `expected one argument`; joined as `--option=-1e3` it is the option's value.
        args = list(sys.argv[1:] if args is None else args)
        joined: list[str] = []
        for arg in args:
            if joined and joined[-1].startswith("--") and "=" not in joined[-1] and NEGATIVE_NUMBER.match(arg):
                joined[-1] = f"{joined[-1]}={arg}"
            else:
                joined.append(arg)
        return super().parse_known_args(joined, namespace)


# torch deprecates the LeafSpec that Lightning builds for every loader it combines (fit and predict
# alike); Lightning's to mend.
LEAFSPEC_DEPRECATION = "`isinstance(treespec, LeafSpec)` is deprecated"


@contextmanager
def lightning_deprecation_ignored() -> Iterator[None]:
    """Inside: torch's LeafSpec deprecation, raised from Lightning's own loops, not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", re.escape(LEAFSPEC_DEPRECATION), FutureWarning)
        yield
