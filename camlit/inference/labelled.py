"""Labelled images for evaluate: a DataModule-style folder, or a test folder with a labels CSV.

In the second case an image's group is `manipulated` when its name contains `_manip`, else
`unaltered` (Kaggle's and the synthetic set's naming), or its row in `--manipulations`
(`fname,manipulation`) for the finer groups.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from camlit.csvio import encoding_hint, printable, read_csv_rows
from camlit.data.manipulations import NAMES, UNALTERED
from camlit.data.samples import camera_folders, manipulated_from_name, scan, unknown_cameras
from camlit.errors import CamlitError, not_a_folder
from camlit.imageio import list_images
from camlit.inference.running import few

MANIPULATED = "manipulated"


@dataclass(frozen=True)
class LabelledImage:
    path: str
    label: int
    group: str
    manipulated: bool | None  # what the model's manipulation flag is given; None when not known


# ---------------------------------------------------------------------------------------------
# Labelled data


def group_from_name(name: str) -> str:
    """Kaggle's test naming: `img_<id>_manip.tif` is manipulated, `img_<id>_unalt.tif` (or anything else) not."""
    return MANIPULATED if "_manip" in Path(name).stem else UNALTERED


def check_folder_classes(root: Path, classes: Sequence[str]) -> None:
    """Every camera folder under `root` (either layout) must be one of the checkpoint's classes."""
    unknown = unknown_cameras(camera_folders(root, classes), classes)
    if unknown:
        raise CamlitError(
            f"--input {root}: camera folder(s) {', '.join(unknown)} not among the checkpoint's classes "
            f"({', '.join(classes)})"
        )


def labelled_folder(root: str | os.PathLike, classes: Sequence[str]) -> list[LabelledImage]:
    """A DataModule-style folder: labels from the camera folders, groups from the manipulation folders."""
    root = Path(root)
    if not root.is_dir():
        raise CamlitError(f"--input {root}: {not_a_folder(root)}")
    check_folder_classes(root, classes)
    loose = [path.name for path in list_images(root)]
    if loose:
        # Without --labels only the camera folders say which camera took a photo.
        print(
            f"warning: --input {root}: {len(loose)} image(s) beside the camera folders left out, having no camera "
            f"folder (give --labels to score them): {few(loose)}",
            file=sys.stderr,
        )
    samples = scan(root, classes)
    images = (LabelledImage(s.path, s.label, s.manipulation, s.manipulation != UNALTERED) for s in samples)
    return sorted(images, key=lambda image: image.path)


def read_table(path: str | os.PathLike, header: tuple[str, str], option: str) -> dict[str, str]:
    """A two-column CSV with exactly `header`, as {first column: second column}; duplicates refused."""
    path = Path(path)
    rows = read_csv_rows(path, option)
    if not rows or tuple(v.strip() for v in rows[0]) != header:
        found = ",".join(rows[0]) if rows else "nothing"
        raise CamlitError(f"{option} {path}: the header must be {','.join(header)}, found {found}")
    table: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise CamlitError(f"{option} {path}: line {number} has {len(row)} fields, expected 2")
        empty = [name for name, value in zip(header, row, strict=True) if not value.strip()]
        if empty:
            raise CamlitError(f"{option} {path}: line {number} has no {empty[0]}")
        if row[0] in table:
            raise CamlitError(f"{option} {path}: {row[0]} is listed twice (line {number})")
        table[row[0]] = row[1].strip()  # a file name keeps its spaces, as predict wrote it
    if not table:
        raise CamlitError(f"{option} {path}: no rows")
    return table


def labelled_csv(
    folder: str | os.PathLike,
    labels: str | os.PathLike,
    classes: Sequence[str],
    manipulations: str | os.PathLike | None = None,
) -> list[LabelledImage]:
    """The images named in `labels` (fname,camera), which must all be in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CamlitError(f"--input {folder}: {not_a_folder(folder)}")
    cameras = read_table(labels, ("fname", "camera"), "--labels")
    unknown = sorted(set(cameras.values()) - set(classes))
    if unknown:
        raise CamlitError(
            f"--labels {labels}: camera(s) {few(unknown)} not among the checkpoint's classes ({', '.join(classes)})"
        )
    paths = [name for name in cameras if name in (".", "..") or os.sep in name or (os.altsep or os.sep) in name]
    if paths:
        # Scored, though outside the folder evaluated: ../train/x.png, or an absolute path.
        raise CamlitError(f"--labels {labels}: {printable(paths[0])} is a path; name files directly in {folder}")
    missing = sorted(name for name in cameras if not (folder / name).is_file())
    if missing:
        shown = few([printable(name) for name in missing])
        raise CamlitError(
            f"--labels {labels}: {len(missing)} file(s) missing from {folder}: {shown}{encoding_hint(missing)}"
        )
    unlabelled = [path.name for path in list_images(folder) if path.name not in cameras]
    if unlabelled:
        # The evaluation is of the labelled images only; a figure over part of the folder should say so.
        print(
            f"warning: --labels {labels}: {len(unlabelled)} image(s) in {folder} have no row and are left out: "
            f"{few(unlabelled)}",
            file=sys.stderr,
        )
    groups = {name: group_from_name(name) for name in cameras}
    flags = {name: manipulated_from_name(name) for name in cameras}
    if manipulations is not None:
        finer = read_table(manipulations, ("fname", "manipulation"), "--manipulations")
        absent = sorted(name for name in cameras if name not in finer)
        if absent:
            raise CamlitError(f"--manipulations {manipulations}: no row for {few(absent)}")
        groups = {name: finer[name] for name in cameras}
        flags = {name: finer[name] != UNALTERED for name in cameras}
        own = sorted(set(groups.values()) - set(NAMES))
        if own:
            # A group of the user's is allowed, but a misspelt `unaltered` would score as manipulated.
            print(
                f"warning: --manipulations {manipulations}: group(s) {few(own)} are not among camlit's "
                f"({', '.join(NAMES)}); they count as manipulated",
                file=sys.stderr,
            )
    return [
        LabelledImage(str(folder / name), classes.index(cameras[name]), groups[name], flags[name])
        for name in sorted(cameras)
    ]
