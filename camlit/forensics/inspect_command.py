"""`camlit inspect`: the camera map of one photo, the region judged foreign, and a picture of both.

`camlit inspect --ckpt_path best.ckpt --input photo.jpg --output DIR` writes, for photo.jpg:

- ``DIR/photo_tiles.npz``: the tile grid (offsets, per-tile probabilities, logits, pooled
  features, the flat and clipped masks, class names, the two block lattices);
- ``DIR/photo_mask.png``: the region judged foreign at the photo's resolution (255) or nothing (0);
- ``DIR/photo_map.png``: the picture (camlit.forensics.picture);
- ``DIR/photo.json``: own camera, photo-level splice score and decision, foreign camera, counts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from camlit.atomic import json_text, read_json, require_writable, write_all_atomic
from camlit.data.commands import at_least, finite
from camlit.data.samples import manipulated_from_name
from camlit.errors import CamlitError, PlainParser, disk_full_as_user_error, exit_on_user_error, not_a_file
from camlit.forensics.camera_map import map_from_rows, predict_tiles
from camlit.forensics.picture import camera_map_picture
from camlit.forensics.splice import COMBINATIONS, DEFAULT_METHOD, METHODS, localise, photo_thresholds
from camlit.imageio import ImageTooSmall, encoded_image, read_rgb, require_crop_fits
from camlit.inference.loading import load_checkpoint
from camlit.inference.options import require_no_overwrite
from camlit.inference.tta import DEFAULT_CROP_SIZE, MIN_CROP_SIZE, require_crop_size
from camlit.termination import exit_on_signal


def build_parser() -> PlainParser:
    parser = PlainParser(
        prog="camlit inspect",
        description="The camera map of one photo: per-tile cameras, tiles too flat or clipped to judge, "
        "the region judged spliced from another camera, and a picture of them.",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by camlit fit")
    parser.add_argument("--input", required=True, help="the photo to inspect")
    parser.add_argument("--output", required=True, help="folder for <stem>_tiles.npz, _mask.png, _map.png, .json")
    parser.add_argument(
        "--method", choices=METHODS, default=DEFAULT_METHOD,
        help=f"splice localisation (default {DEFAULT_METHOD}, chosen by measurement; see docs/forensics.md)",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", type=finite, default=None,
        help="photo-level score from which a foreign region is drawn (default: the one `camlit calibrate` set "
        "beside the checkpoint, else the method's measured one for the demo model); not for a combination",
    )  # fmt: skip
    parser.add_argument(
        "--crop_size", type=int, default=None, help=f"tile side (at least {MIN_CROP_SIZE}); default: the training crop"
    )
    parser.add_argument(
        "--manipulated", choices=("names", "yes", "no"), default="names",
        help="for a model trained with the manipulation flag: whether the photo is manipulated",
    )  # fmt: skip
    parser.add_argument("--batch_size", type=at_least(1), default=256, help="tiles per forward pass (default 256)")
    parser.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1")
    parser.add_argument("--devices", type=at_least(1), default=1, help="devices of --device's kind (default 1)")
    return parser


def inspect_photo(args: argparse.Namespace) -> dict:
    """Run the map and write every output; the summary."""
    require_crop_size(args.crop_size)
    source, output = Path(args.input), Path(args.output)
    if not source.is_file():
        raise CamlitError(f"--input {source}: {not_a_file(source)}")
    if output.exists() and not output.is_dir():
        raise CamlitError(f"--output {output}: is a file; name a folder")
    require_writable(output, "--output", folder=True)
    if output.resolve() in {source.absolute().parent.resolve(), source.resolve().parent}:
        # predict and fit would read the map and the mask there as photos (the mask, grey, unusable);
        # a linked photo's folder is both the link's and its target's.
        raise CamlitError(
            f"--output {output}: the photo's own folder, where predict and fit would read inspect's pictures as "
            "photos; name another folder"
        )
    outputs = output_paths(output, source.stem)
    for path in outputs.values():  # not over the checkpoint, the files beside it, or a run's own files
        require_no_overwrite({"output": str(path)}, {"ckpt_path": args.ckpt_path}, [])
    if any(path.exists() and path.samefile(source) for path in outputs.values()):
        raise CamlitError(f"--input {source}: inspect would write over it in --output {output}; name another folder")
    require_own_outputs(outputs, source)
    folders = [path for path in outputs.values() if path.is_dir()]
    if folders:
        raise CamlitError(
            f"--output: {folders[0]} is a folder where inspect writes a file; move it or name another folder"
        )
    if args.threshold is not None and args.method in COMBINATIONS:
        tried = COMBINATIONS[args.method]
        raise CamlitError(
            f"--threshold: {args.method} tries {' then '.join(tried)}, each at its own threshold from the "
            f"calibration; give --threshold with --method {' or --method '.join(tried)}"
        )
    image = read_rgb(source)
    model, trained_size = load_checkpoint(args.ckpt_path, args.device)
    size = args.crop_size or trained_size or DEFAULT_CROP_SIZE
    try:
        require_crop_fits(source, *image.shape[:2], size)
    except ImageTooSmall as problem:
        raise CamlitError(f"--input {problem}") from None
    flag = manipulated_from_name(source) if args.manipulated == "names" else args.manipulated == "yes"
    predictions = predict_tiles(
        model, [source], size, args.batch_size, device=args.device, devices=args.devices,
        reader=lambda _: image, manipulated=[flag],
    )  # fmt: skip
    if not predictions.primary:
        return {}
    camera_map = map_from_rows(image, model.classes, size, predictions.extras[0])
    thresholds = photo_thresholds(args.method, args.ckpt_path)
    if args.threshold is not None:
        thresholds = {args.method: args.threshold}
    result = localise(camera_map, args.method, thresholds)
    judged = bool(camera_map.reliable.any())
    summary = {
        "input": str(source),
        "input_path": str(source.resolve()),  # which photo, from any folder: require_own_outputs
        "checkpoint": str(args.ckpt_path),
        "method": args.method,
        # One number, or photo_thresholds' (the lattice's after a gamma, each part of a combination).
        "threshold": thresholds if len(thresholds) > 1 else thresholds[args.method],
        "own_camera": model.classes[result.own] if judged else None,  # no tile to judge: no camera
        "photo_score": result.photo_score,
        "decided_by": result.method,  # the part of a combination whose region (or score) this is
        "spliced": result.spliced,
        "foreign_camera": model.classes[result.foreign] if result.spliced else None,
        "foreign_share": float(result.mask.mean()),
        "tiles": int(camera_map.reliable.size),
        "flat_tiles": int(camera_map.flat.sum()),
        "clipped_tiles": int(camera_map.clipped.sum()),
        "tile_size": size,
    }
    files = {
        outputs["tiles"]: camera_map.npz(),
        outputs["mask"]: encoded_image(outputs["mask"], np.where(result.mask, 255, 0).astype(np.uint8)),
        outputs["map"]: encoded_image(outputs["map"], camera_map_picture(image, camera_map, result)),
        outputs["summary"]: json_text(summary).encode(),
    }
    with disk_full_as_user_error("the four output files are written all together or not at all"):
        write_all_atomic(files)
    return summary


def require_own_outputs(outputs: dict[str, Path], source: Path) -> None:
    """Refuse to replace files that an earlier `camlit inspect` of this photo did not write: its
    summary `<stem>.json` beside them is the sign that they are its own, and names the photo (a
    photo of the same stem from another folder, or of another format, replaced them)."""
    present = [path for path in outputs.values() if path.exists()]
    if not present:
        return
    summary = inspect_summary(outputs["summary"])
    if summary is None:
        why = (
            "not an inspect summary"
            if outputs["summary"].exists()
            else f"no inspect summary {outputs['summary'].name} beside it"
        )
        raise CamlitError(
            f"--output: {present[0]} is there and is not an earlier camlit inspect output ({why}); "
            "name another folder or move it"
        )
    recorded = summary.get("input_path")
    # A summary written before the whole path was kept names the photo as given: its name then.
    other = Path(recorded) != source.resolve() if recorded else Path(str(summary["input"])).name != source.name
    if other:
        raise CamlitError(
            f"--output: {outputs['summary']} holds the outputs of another photo of that stem, "
            f"{recorded or summary['input']}; name another folder"
        )


def inspect_summary(path: Path) -> dict | None:
    """An earlier inspect's summary at `path`, or None where there is none."""
    try:
        summary = read_json(path)
    except (OSError, ValueError):
        return None
    keys = {"input", "checkpoint", "method", "tile_size"}
    if not isinstance(summary, dict) or not keys <= summary.keys():
        return None
    # The photo it names is compared with this one's: a path of another type is no summary inspect wrote.
    return summary if all(isinstance(summary.get(key, ""), str) for key in ("input", "input_path")) else None


def output_paths(output: Path, stem: str) -> dict[str, Path]:
    """The files inspect writes for a photo named `stem`."""
    names = {"tiles": "_tiles.npz", "mask": "_mask.png", "map": "_map.png", "summary": ".json"}
    return {kind: output / f"{stem}{suffix}" for kind, suffix in names.items()}


def main(argv: list[str] | None = None) -> dict:
    """Inspect; `argv` as on the command line. Input mistakes exit with one `error:` line, status 2."""
    args = build_parser().parse_args(argv)
    with exit_on_user_error(), exit_on_signal(f"each file in {args.output} is whole; rerun to write them all"):
        summary = inspect_photo(args)
    if summary:
        verdict = f"spliced ({100 * summary['foreign_share']:.1f}% foreign)" if summary["spliced"] else "not spliced"
        camera = summary["own_camera"] or "every tile too flat or clipped to judge, no camera"
        print(f"{summary['input']}: {camera}, {verdict}; outputs in {args.output}")
    return summary
