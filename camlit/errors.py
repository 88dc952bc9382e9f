"""The one error type that entry points print as a single line instead of a traceback."""

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager


class CamlitError(ValueError):
    """A mistake in the user's input: a file, a folder, an argument. The message names it."""

    def __init__(self, message: str = "", *args):
        # A DataLoader worker's error comes back as "Caught <type> in DataLoader worker process N.
        # Original Traceback ...": keep its last line, the message the user needs.
        if isinstance(message, str) and message.startswith("Caught ") and "\nOriginal Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message, *args)


@contextmanager
def disk_full_as_user_error(intact: str, where: str | os.PathLike | None = None) -> Iterator[None]:
    """A full disk ends as one line naming the file that did not fit (else `where`), and what is still whole."""
    try:
        yield
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise CamlitError(f"{error.filename or where or 'a file'}: no space left on device; {intact}") from None
