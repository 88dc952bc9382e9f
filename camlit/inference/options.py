"""The options `camlit predict` and `camlit evaluate` share, and what they do with them."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from jsonargparse import Namespace

from camlit.atomic import require_writable
from camlit.data.commands import add_max_pixels_argument
from camlit.data.manipulations import MANIPULATED
from camlit.data.samples import manipulated_from_name
from camlit.errors import CamlitError, CommandParser
from camlit.imageio import ImageTooSmall, UnreadableImage, is_image_file, read_rgb
from camlit.inference.aggregate import AGGREGATES
from camlit.inference.loading import load_checkpoint
from camlit.inference.running import Predictions, few, predict_paths
from camlit.inference.tta import (
    DEFAULT_CROP_SIZE,
    DEFAULT_CROPS,
    MAX_CROPS,
    MIN_CROP_SIZE,
    CropPlan,
    require_crop_size,
)
from camlit.training.checkpointing import sidecars
from camlit.training.runfolder import LOCK_NAME


def add_prediction_arguments(parser: CommandParser) -> None:
    """Crop, aggregation and loader options, shared by predict and evaluate."""
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `camlit fit`")
    parser.add_argument("--input", required=True, help="folder of images")
    parser.add_argument(
        "--crops", type=int, default=DEFAULT_CROPS,
        help=f"crops per image (default {DEFAULT_CROPS}, at most {MAX_CROPS}): the centre crop plus random "
        "even-offset crops",
    )  # fmt: skip
    parser.add_argument("--crop_grid", action="store_true", help="take --crops crops on a deterministic even grid")
    parser.add_argument(
        "--crop_size", type=int, default=None,
        help=f"crop side (at least {MIN_CROP_SIZE}); default: the checkpoint's training crop size, else "
        f"{DEFAULT_CROP_SIZE}",
    )  # fmt: skip
    parser.add_argument(
        "--aggregate", choices=AGGREGATES, default="mean",
        help="combine crops by the mean softmax (default), the renormalised geometric mean, or the seed's "
        "max rule (the single most confident crop prediction)",
    )  # fmt: skip
    parser.add_argument(
        "--balance", action="store_true",
        help="give every class an equal share of the images (Kaggle's test set has 264 per class), "
        "by the optimal assignment under the aggregated probabilities",
    )  # fmt: skip
    parser.add_argument(
        "--manipulated", choices=("names", "yes", "no"), default="names",
        help="whether the images are manipulated: from the file names (default; Kaggle's _manip/_unalt), "
        "or yes/no for all of them. A model trained with the manipulation flag needs it; --balance uses it "
        "to balance each group on its own",
    )  # fmt: skip
    parser.add_argument(
        "--tta_manipulations", default="",
        help="also predict on these manipulated versions of each image (the whole image manipulated, then "
        "cropped the same way) and combine every crop: a comma list such as jpeg90,gamma0.8, or all",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random crops (default 0)")
    parser.add_argument("--batch_size", type=int, default=128, help="crops per forward pass (default 128)")
    parser.add_argument("--num_workers", type=int, default=min(4, os.cpu_count() or 1), help="loader workers")
    parser.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1")
    parser.add_argument(
        "--devices", type=int, default=1,
        help="how many devices of --device's kind (default 1); several share the images, one process each",
    )  # fmt: skip
    parser.add_argument(
        "--skip_unreadable", action="store_true",
        help="leave unreadable images out (still reported) instead of ending with exit status 2",
    )  # fmt: skip
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    add_max_pixels_argument(parser)


def check_prediction_arguments(args: Namespace) -> None:
    # Checked here, not by an argparse type: jsonargparse's help would print the type as a function.
    if not 1 <= args.crops <= MAX_CROPS:
        raise CamlitError(f"--crops must be 1 to {MAX_CROPS}, got {args.crops} (an image's crops are cut together)")
    if args.batch_size < 1:
        raise CamlitError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.seed < 0:
        raise CamlitError(f"--seed must be 0 or more, got {args.seed}")
    require_crop_size(args.crop_size)
    if args.num_workers < 0:
        raise CamlitError(f"--num_workers must be 0 or more, got {args.num_workers}")
    tta_manipulations(args.tta_manipulations)


def tta_manipulations(value: str) -> tuple[str, ...]:
    """`--tta_manipulations` as names: `all` is Kaggle's eight; empty is none."""
    if value.strip() == "all":
        return MANIPULATED
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    if "all" in names:
        raise CamlitError(f"--tta_manipulations {value}: `all` stands alone (it names all eight); give it, or names")
    unknown = [name for name in names if name not in MANIPULATED]
    if unknown:
        raise CamlitError(f"--tta_manipulations: unknown {unknown[0]!r}; choose from all, {', '.join(MANIPULATED)}")
    return tuple(dict.fromkeys(names))


def require_file_paths(**options: str | None) -> None:
    """Output options must name files that can be written; refused before any work otherwise."""
    for option, path in options.items():
        if path == "-":  # the shell's name for standard output: a file named "-" was written
            raise CamlitError(f"--{option} -: camlit writes files, not to standard output; name a file")
        if path is not None and Path(path).is_dir():
            raise CamlitError(f"--{option} {path}: is a folder; name a file to write")
        if path is not None:
            require_writable(path, f"--{option}")


CHECKPOINT_NAMES = (".ckpt", ".ckpt.sha256")


def is_run_checkpoints(folder: Path) -> bool:
    """Whether `folder` is a run's checkpoints/ folder: named so, and holding a checkpoint."""
    return folder.name == "checkpoints" and any(folder.glob("*.ckpt"))


# The files fit keeps in a run folder beside checkpoints/: a CSV over config.yaml left a run that
# --resume refused ("not a config").
RUN_FILES = ("config.yaml", "hparams.yaml", LOCK_NAME)


def is_run_file(path: Path) -> bool:
    """Whether `path` names one of a run folder's own files, or a file in its checkpoints/ folder."""
    folder = path.parent
    in_run = is_run_checkpoints(folder / "checkpoints") or (folder / LOCK_NAME).exists()
    own = path.name in RUN_FILES or path.name.startswith("events.out.tfevents.")
    return is_run_checkpoints(folder) or (in_run and own)


def require_no_overwrite(outputs: dict[str, str | None], inputs: dict[str, str | None], folders: Sequence[str]) -> None:
    """Refuse, before any work, an output that would replace an input file, another output, or an
    image under an input folder (a later run would read it as one)."""
    taken = {Path(path).resolve(): f"--{option}" for option, path in inputs.items() if path}
    if inputs.get("ckpt_path"):
        kept = "a file camlit keeps beside --ckpt_path"
        taken.update({path.resolve(): kept for path in sidecars(inputs["ckpt_path"])})
    for option, path in outputs.items():
        if not path:
            continue
        where = Path(path).resolve()
        if where in taken:
            raise CamlitError(f"--{option} {path}: is also {taken[where]}; name another file")
        if where.name.endswith(CHECKPOINT_NAMES) or is_run_file(where):
            # Another checkpoint of the run, or its hash, was replaced without a word.
            raise CamlitError(
                f"--{option} {path}: a checkpoint's name, or one of a run's own files (its checkpoints folder, "
                "config.yaml, hparams.yaml, its TensorBoard events); name another file"
            )
        for folder in folders:
            if is_image_file(where) and where.is_relative_to(Path(folder).resolve()):
                raise CamlitError(
                    f"--{option} {path}: an image name inside the input folder {folder}; name another file"
                )
        taken[where] = f"--{option}"


def prepare(args: Namespace):
    """(model, crop plan) from the shared options."""
    check_prediction_arguments(args)
    model, trained_size = load_checkpoint(args.ckpt_path, args.device)
    size = args.crop_size or trained_size or DEFAULT_CROP_SIZE
    plan = CropPlan(size, args.crops, args.crop_grid, args.seed, tta_manipulations(args.tta_manipulations))
    return model, plan


def manipulated_flags(
    args: Namespace, paths: Sequence[str | os.PathLike], known: Sequence[bool | None] | None = None
) -> list[bool | None]:
    """Per path, whether it is manipulated: --manipulated yes/no for all, else `known` (what the
    caller knows, e.g. evaluate's manipulation folders), else the file name."""
    if args.manipulated != "names":
        return [args.manipulated == "yes"] * len(paths)
    if known is not None:
        return list(known)
    return [manipulated_from_name(path) for path in paths]


def predict_with(
    args: Namespace,
    model,
    plan: CropPlan,
    paths: Sequence[str | os.PathLike],
    known: Sequence[bool | None] | None = None,
) -> Predictions:
    """Prediction with the crop, aggregation, flag, device and loader options of the command line."""
    return predict_paths(
        model,
        paths,
        plan,
        rule=args.aggregate,
        balance=args.balance,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        devices=args.devices,
        progress=not args.no_progress,
        reader=partial(read_rgb, max_pixels=args.max_pixels),
        manipulated=manipulated_flags(args, paths, known),
    )


def require_usable(predictions: Predictions) -> None:
    """One line, and no output written, when not a single image could be used."""
    if predictions.usable.any():
        return
    reasons = [predictions.problems[i] for i in sorted(predictions.problems)]
    hint = "; choose a smaller --crop_size" if all(isinstance(r, ImageTooSmall) for r in reasons) else ""
    raise CamlitError(f"none of the {len(reasons)} images in --input is usable, e.g. {reasons[0]}{hint}")


def image_names(paths: Sequence[str | os.PathLike], root: str | os.PathLike | None = None) -> list[str]:
    """How reports name images: by their path under `root` (a folder tree holds one name in
    several camera folders), else by file name."""
    names = []
    for path in map(Path, paths):
        inside = root is not None and path.is_relative_to(root)
        names.append(str(path.relative_to(root)) if inside else path.name)
    return names


def report_problems(
    problems: dict[int, UnreadableImage], paths: Sequence[str], skip: bool, root: str | os.PathLike | None = None
) -> None:
    """Every reason on stderr; unless `skip`, end with one `error:` line naming the files (under
    `root` when given), exit 2."""
    if not problems:
        return
    for index in sorted(problems):
        print(f"warning: skipped {problems[index]}", file=sys.stderr)
    if not skip:
        names = image_names([paths[i] for i in sorted(problems)], root)
        raise CamlitError(
            f"{len(names)} unusable image(s) (unreadable, or smaller than the crop): {few(names, 20)}; "
            "rerun with --skip_unreadable to accept that"
        )
