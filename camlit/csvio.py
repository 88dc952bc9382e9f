"""Reading the CSV files users hand to camlit (labels, manipulations, probabilities), one way."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from camlit.errors import CamlitError, not_a_file


def read_csv_rows(path: str | os.PathLike, option: str) -> list[list[str]]:
    """The non-blank rows of a UTF-8 CSV file (a BOM allowed); one `error:` line naming `option` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CamlitError(f"{option} {path}: {not_a_file(path)}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            return [row for row in csv.reader(file) if any(value.strip() for value in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise CamlitError(f"{option} {path}: not a UTF-8 CSV file ({error})") from None
