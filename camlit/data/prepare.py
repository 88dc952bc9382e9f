"""Build the training folders the way Kaggle built its test set: manipulate the full photo, then crop.

``prepare_dataset("data/train", "data-512")`` reads ``data/train/<camera>/*.jpg`` and writes
``data-512/<manipulation>/<camera>/<stem>.png``, the seed notebook's centre crop, or with
``tiles=N`` up to N non-overlapping tiles on even offsets, ``<stem>_t<k>.png``, centre outwards.
PNG is lossless, so a JPEG manipulation's artefacts are kept and no new ones are added. Crop
offsets are computed on the manipulated frame: after a resize they follow the new frame size.

Every crop equals the same crop of the manipulated full frame, bit for bit, yet only the part of
the frame that the crops need is manipulated (`manipulations.source_window`), so a worker holds little more than
the decoded photo. Runs resume: outputs are written atomically, a photo is decoded only when some
of its outputs are missing, and temporary files left by a killed run are removed first. An output
folder belongs to one (size, tiles) setting; do not run two preparations into it at once.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from camlit.atomic import make_folders, read_json, require_writable, stale_temporaries, write_bytes_atomic
from camlit.data import manipulations as manip
from camlit.data.crops import MIN_CROP_SIZE, center_offset, tile_offsets
from camlit.errors import CamlitError, not_a_folder
from camlit.imageio import MAX_PIXELS, UnreadableImage, header_shape, list_images, read_rgb, write_image_atomic
from camlit.workers import in_parallel


@dataclass(frozen=True)
class Task:
    path: Path
    camera: str
    output: Path
    manipulations: tuple[str, ...]
    size: int
    tiles: str | int
    max_pixels: int = MAX_PIXELS


@dataclass
class PhotoResult:
    written: int = 0
    skipped: bool = False
    failure: str | None = None
    too_small: list[str] = field(default_factory=list)


@dataclass
class PrepareSummary:
    photos: int = 0
    written: int = 0  # output files written by this run
    skipped: int = 0  # photos whose outputs all existed, so not decoded
    failures: list[str] = field(default_factory=list)  # unreadable or name-colliding inputs, one line each
    too_small: list[str] = field(default_factory=list)  # outputs not made: frame smaller than a crop

    @property
    def failed(self) -> int:
        return len(self.failures)

    def __str__(self) -> str:
        lines = [f"failed: {line}" for line in self.failures]
        lines += [f"not made: {line}" for line in self.too_small]
        lines.append(
            f"{self.photos} photos: {self.written} files written, {self.skipped} photos already complete, "
            f"{self.failed} failed, {len(self.too_small)} outputs too small"
        )
        return "\n".join(lines)


def crop_offsets(height: int, width: int, size: int, tiles: str | int) -> list[tuple[int, int]]:
    if tiles == "center":
        return [center_offset(height, width, size)]
    return tile_offsets(height, width, size, tiles)


def _plan(task: Task, height: int, width: int) -> tuple[dict, list[str]]:
    """Each manipulation's output paths with their crop offsets, and messages for those too small."""
    plan, too_small = {}, []
    for name in task.manipulations:
        h, w = manip.MANIPULATIONS[name].output_shape(height, width)
        if h < task.size or w < task.size:
            too_small.append(f"{task.path} {name}: {w}x{h} is smaller than {task.size}x{task.size}")
            continue
        folder = task.output / name / task.camera
        offsets = crop_offsets(h, w, task.size, task.tiles)
        if task.tiles == "center":
            names = [f"{task.path.stem}.png"]
        else:
            names = [f"{task.path.stem}_t{k}.png" for k in range(len(offsets))]
        plan[name] = [(folder / n, offset) for n, offset in zip(names, offsets, strict=True)]
    return plan, too_small


def prepare_photo(task: Task) -> PhotoResult:
    """Write the missing outputs of one photo, decoding it once and only if something is missing."""
    shape = header_shape(task.path)
    if shape is not None and shape[0] * shape[1] <= task.max_pixels:
        plan, too_small = _plan(task, *shape)
        if plan and all(path.is_file() for outputs in plan.values() for path, _ in outputs):
            return PhotoResult(skipped=True, too_small=too_small)
        if not plan:  # every output too small: nothing to decode for
            return PhotoResult(too_small=too_small)
    try:
        image = read_rgb(task.path, task.max_pixels)
    except UnreadableImage as error:
        return PhotoResult(failure=str(error))
    plan, too_small = _plan(task, *image.shape[:2])
    result = PhotoResult(too_small=too_small)
    for name, outputs in plan.items():
        # A folder at a crop's name is no crop: counted as done, the set went to fit a photo short.
        blocked = [path for path, _ in outputs if path.exists() and not path.is_file()]
        if blocked:
            result.failure = f"{task.path}: {blocked[0]} is not a file, where its crop goes; move it away and rerun"
        missing = [(path, offset) for path, offset in outputs if not path.exists()]
        if not missing:
            continue
        crops = manip.manipulated_crops(name, image, [offset for _, offset in missing], task.size)
        for (path, _), crop in zip(missing, crops, strict=True):
            write_image_atomic(path, crop)
        result.written += len(missing)
        # Release this manipulation before computing the next, so only one is ever held.
        del crops
    return result


def _check_arguments(tiles, names, size) -> tuple[str | int, tuple[str, ...]]:
    if not (tiles == "center" or (isinstance(tiles, int) and not isinstance(tiles, bool) and tiles >= 1)):
        raise CamlitError(f"--tiles must be 'center' or a positive number, not {tiles!r}")
    if not isinstance(size, int) or size < MIN_CROP_SIZE:
        raise CamlitError(
            f"--size must be at least {MIN_CROP_SIZE}, the smallest crop fit and predict take; not {size!r}"
        )
    if tiles != "center" and size % 2:
        # Tiles side by side at an odd size fall on odd offsets, off the sensor's 2x2 colour grid.
        raise CamlitError(f"--size {size}: tiles need an even size to stay on even offsets")
    names = tuple(dict.fromkeys(manip.MANIPULATIONS if names is None else (n.strip() for n in names)))
    for name in names:
        if name not in manip.MANIPULATIONS:
            known = ", ".join(manip.MANIPULATIONS)
            raise CamlitError(f"--manipulations: unknown {name!r}; choose from {known}")
    if not names:
        raise CamlitError("--manipulations: none chosen")
    return tiles, names


def _find_photos(
    source: Path, output: Path, names, size, tiles, max_pixels: int
) -> tuple[list[Task], list[str], list[str]]:
    """Tasks, camera folder names, and failures for photos whose output names collide."""
    tasks, cameras, failures = [], [], []
    loose = [path.name for path in list_images(source)]
    if loose:
        # Only a camera folder says which camera took a photo; these were left out without a word.
        shown = ", ".join(loose[:3]) + (", ..." if len(loose) > 3 else "")
        print(
            f"warning: --input {source}: {len(loose)} image(s) beside the camera folders left out: {shown}",
            file=sys.stderr,
        )
    folders = {p: list_images(p) for p in sorted(source.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    for folder, photos in folders.items():
        if not photos and any(list_images(inner) for inner in folder.iterdir() if inner.is_dir()):
            # Kaggle's download root: its test/ of photos became a camera, and train/ was passed over.
            raise CamlitError(
                f"--input {source}: {folder} holds camera folders, not photos; give --input {folder} "
                f"(expected <input>/<camera>/*.jpg)"
            )
    for folder, photos in folders.items():
        stems: dict[str, Path] = {}
        for path in photos:
            if path.stem in stems:
                failures.append(f"{path}: same output name as {stems[path.stem].name}, skipped")
                continue
            stems[path.stem] = path
            tasks.append(Task(path, folder.name, output, names, size, tiles, max_pixels))
        if stems:
            cameras.append(folder.name)
    if not tasks:
        raise CamlitError(f"--input {source}: no images in its camera folders (expected {source}/<camera>/*.jpg)")
    return tasks, cameras, failures


def _results(tasks: list[Task], workers: int | None, progress: bool):
    # The cores this process may use, which a container or job scheduler can limit.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return in_parallel(prepare_photo, [(task,) for task in tasks], workers or cores, "photos" if progress else None)


# The (size, tiles) an output folder was prepared with: a rerun with others took the crops already
# there as done (the old size kept, silently), or mixed centre crops with tiles.
SETTING = ".prepare.json"


def require_same_setting(output: Path, size: int, tiles: str | int) -> None:
    """Refuse to prepare into a folder prepared with another --size or --tiles."""
    path = output / SETTING
    if path.exists() and not path.is_file():
        raise CamlitError(f"--output {output}: its {SETTING} is not a file; prepare into another folder")
    if path.is_file():
        try:
            saved = read_json(path)
            before = (saved["size"], saved["tiles"])
        except (OSError, ValueError, KeyError, TypeError):
            raise CamlitError(
                f"--output {output}: its {SETTING} is not one prepare wrote; prepare into another folder"
            ) from None
    else:
        # A folder prepared before the file was kept: the size of a crop already there.
        crop = next(output.glob("*/*/*.png"), None)
        shape = header_shape(crop) if crop is not None else None
        if shape is None or shape == (size, size):
            return
        before = (shape[0], "unknown")
    if before[0] != size or before[1] not in (tiles, "unknown"):
        raise CamlitError(
            f"--output {output}: prepared with --size {before[0]} --tiles {before[1]}, not --size {size} "
            f"--tiles {tiles}; prepare into another folder (crops already there would count as done)"
        )


def prepare_dataset(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    tiles: str | int = "center",
    manipulations: list[str] | tuple[str, ...] | None = None,
    size: int = 512,
    workers: int | None = None,
    progress: bool = True,
    max_pixels: int = MAX_PIXELS,
) -> PrepareSummary:
    """Write `output_dir/<manipulation>/<camera>/` crops for every photo under `input_dir/<camera>/`.

    `manipulations` defaults to all nine, unaltered included; `workers` to one process per core
    (1 runs in this process). Raises CamlitError for bad arguments or an input without images.
    """
    tiles, names = _check_arguments(tiles, manipulations, size)
    if not Path(input_dir).is_dir():
        raise CamlitError(f"--input {input_dir}: {not_a_folder(input_dir)}")
    output = Path(output_dir)
    if output.resolve().is_relative_to(Path(input_dir).resolve()):
        # Its manipulation folders would become camera folders of the input.
        raise CamlitError(f"--output {output_dir}: inside --input {input_dir}; write the prepared set elsewhere")
    if Path(input_dir).resolve().is_relative_to(output.resolve()):
        # The input's folder would sit among the manipulation folders, read as one by fit.
        raise CamlitError(f"--input {input_dir}: inside --output {output_dir}; write the prepared set elsewhere")
    require_writable(output, "--output", folder=True)
    require_same_setting(output, size, tiles)
    tasks, cameras, failures = _find_photos(Path(input_dir), output, names, size, tiles, max_pixels)
    for folder in (output / name / camera for name in names for camera in cameras):
        # Left by a killed run (write_image_atomic names them .<name>.png.tmp<pid>); only its own.
        if folder.is_dir():
            for leftover in stale_temporaries(folder, (".png",)):
                leftover.unlink(missing_ok=True)
    folders = [output / name / camera for name in names for camera in cameras]
    added = sorted({p for f in folders for p in (f, f.parent) if not p.exists()}, key=lambda p: -len(p.parts))
    setting_was_there = (output / SETTING).exists()
    added += make_folders(output)  # the output and the levels above it that this run made, deepest first
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(output / SETTING, json.dumps({"size": size, "tiles": tiles}).encode())
    summary = PrepareSummary(photos=len(tasks) + len(failures), failures=failures)
    for result in _results(tasks, workers, progress):
        summary.written += result.written
        summary.skipped += result.skipped
        summary.too_small += result.too_small
        if result.failure:
            summary.failures.append(result.failure)
    summary.failures.sort()
    summary.too_small.sort()
    if not summary.written and not summary.skipped:
        # Nothing made: take away what this run added, so the output is as it was.
        if not setting_was_there:
            (output / SETTING).unlink(missing_ok=True)
        for folder in added:
            with suppress(OSError):  # not empty: something else is there, and stays
                folder.rmdir()
        first = f"; the first: {summary.failures[0]}" if summary.failures else ""
        raise CamlitError(
            f"--input {input_dir}: no crop made: {summary.failed} photo(s) failed and {len(summary.too_small)} "
            f"output(s) are smaller than --size {size}{first}"
        )
    return summary
