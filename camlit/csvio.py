"""Reading the CSV files users hand to camlit (labels, manipulations, probabilities), one way."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from camlit.errors import CamlitError, not_a_file


def read_csv_rows(path: str | os.PathLike, option: str) -> list[list[str]]:
    """The non-blank rows of a UTF-8 CSV file (a BOM allowed); one `error:` line naming `option` otherwise.

    A file name (the first column) may hold bytes that are not UTF-8, kept as the OS gives them
    (surrogate escapes): predict writes such a name as its bytes, and its CSV reads back."""
    path = Path(path)
    if not path.is_file():
        raise CamlitError(f"{option} {path}: {not_a_file(path)}")
    try:
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as file:
            rows = [row for row in csv.reader(file) if any(value.strip() for value in row)]
    except csv.Error as error:
        raise CamlitError(f"{option} {path}: not a UTF-8 CSV file ({error})") from None
    for number, row in enumerate(rows, 1):
        if any(is_escaped(value) or "\0" in value for value in row[1:]) or "\0" in "".join(row[:1]):
            # Another encoding (UTF-16's zero bytes), or binary, rather than an odd file name.
            raise CamlitError(f"{option} {path}: not a UTF-8 CSV file (row {number} holds bytes that are not UTF-8)")
    return rows


def is_escaped(value: str) -> bool:
    """Whether `value` holds a byte that was not UTF-8 (decoded as a lone surrogate escape)."""
    return any("\udc80" <= character <= "\udcff" for character in value)


def encoding_hint(names: list[str]) -> str:
    """Why named files may be missing: names read with bytes that are not UTF-8 (a Latin-1 CSV, say)."""
    if not any(map(is_escaped, names)):
        return ""
    return "; the file names hold bytes that are not UTF-8 (saved in another encoding?): save the CSV as UTF-8"


def printable(name: str) -> str:
    """`name` with each byte that is not UTF-8 written as \\xNN, as an error line can print it."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
