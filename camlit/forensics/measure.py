"""Measure camlit.forensics on the measuring sets: open-set scores and splice methods, side by side.

`python scripts/measure_forensics.py --ckpt_path last.ckpt --sets DIR --tune DIR --known data/synthetic/test
--json docs/results/forensics.json --work /tmp/measure`

Every model output is computed once and kept in --work (rerunning with the same checkpoint,
folders and options reuses it; with others it is refused): crops' logits and
features of the run's training and validation photos, of the known test set and of the unknown
cameras; the tile maps of every splice photo. Splice thresholds are chosen on --tune (another
seed of the same generator) and reported on --sets.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from camlit.atomic import json_text, read_json, write_json_atomic, write_text_atomic
from camlit.errors import CamlitError, PlainParser, exit_on_user_error
from camlit.forensics.measure_splices import measure_splices
from camlit.forensics.measure_unknown import measure_unknown
from camlit.inference.loading import load_checkpoint
from camlit.inference.openset import SCORES
from camlit.training.checkpointing import file_hash


def main(argv: list[str] | None = None) -> None:
    parser = PlainParser(prog="measure_forensics.py", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", required=True)
    parser.add_argument("--sets", required=True, help="camlit.data.forensic_sets output: splice/ and unknown/")
    parser.add_argument("--tune", default=None, help="a splice folder of another seed, for the thresholds")
    parser.add_argument("--examples", default=None, help="write the two example pictures into this folder")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos of each splice group")
    parser.add_argument("--known", required=True, help="the synthetic test set (test_labels.csv beside it)")
    parser.add_argument("--train_dir", default=None, help="the run's training folder (default: the checkpoint's)")
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--crop_grid", action="store_true", help="the crops on an even grid, not at random")
    parser.add_argument("--scores", default=",".join(SCORES), help="the open-set scores to compare, comma-separated")
    parser.add_argument(
        "--tune_unknown", default=None, help="unknown photos of another seed, to weigh the JPEG steps on"
    )
    parser.add_argument("--work", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--only", choices=("unknown", "splices"), default=None)
    args = parser.parse_args(argv)
    with exit_on_user_error():
        for option in ("sets", "known", "tune", "tune_unknown"):
            folder = getattr(args, option)
            if folder is not None and not Path(folder).is_dir():
                raise CamlitError(f"--{option} {folder}: no such folder")
        require_parts(args)
        model, size = load_checkpoint(args.ckpt_path, "cpu")
        Path(args.work).mkdir(parents=True, exist_ok=True)
        require_work_for(args)
        measure(model, size, args)


def require_parts(args) -> None:
    """What the parts measured need, before any model work: known scores, and the sets' folders."""
    unknown_scores = [name for name in args.scores.split(",") if name not in SCORES]
    if unknown_scores:
        raise CamlitError(f"--scores: unknown {unknown_scores[0]!r}; choose from {', '.join(SCORES)}")
    parts = {"unknown": args.only != "splices", "splice": args.only != "unknown"}
    for part in (name for name, measured in parts.items() if measured):
        if not (Path(args.sets) / part).is_dir():
            raise CamlitError(f"--sets {args.sets}: no {part}/ folder in it (camlit.data.forensic_sets makes it)")


# What the outputs kept in --work depend on, for both parts and for each; the format goes up when
# what they hold changes.
WORK_FORMAT = 2
WORK_KEY = "measure_key.json"
PART_OPTIONS = {
    "both": ("sets",),
    "unknown": ("known", "train_dir", "tune_unknown", "crops", "crop_grid"),
    "splices": ("tune", "limit"),
}
FOLDER_OPTIONS = ("sets", "known", "train_dir", "tune_unknown", "tune")


def work_key(args) -> dict:
    """The checkpoint (by its hash), the folders and the options that the parts this run measures
    (--only) keep their outputs in --work by."""
    parts = ["both", *(["unknown"] if args.only != "splices" else []), *(["splices"] if args.only != "unknown" else [])]
    key = {"format": WORK_FORMAT, "checkpoint_sha256": file_hash(args.ckpt_path)}
    for option in (o for part in parts for o in PART_OPTIONS[part]):
        value = getattr(args, option)
        key[option] = str(Path(value).resolve()) if option in FOLDER_OPTIONS and value else value
    return key


def require_work_for(args) -> None:
    """Outputs kept in --work are reused only for the checkpoint, folders and options they were made
    from: another model's tile maps would be measured as this one's without a word."""
    key, recorded = work_key(args), Path(args.work) / WORK_KEY
    if recorded.is_file():
        try:
            before = read_json(recorded)
        except (OSError, ValueError):
            before = None
        if not isinstance(before, dict):
            raise CamlitError(f"--work {args.work}: its {WORK_KEY} is not one camlit wrote; give a fresh --work")
        differ = [name for name in key if name in before and before[name] != key[name]]
        if differ:
            raise CamlitError(
                f"--work {args.work}: holds outputs made with another {', '.join(differ)}; "
                "give a fresh --work (or remove that one)"
            )
        key = {**before, **key}
    elif any(Path(args.work).iterdir()):
        raise CamlitError(
            f"--work {args.work}: holds files, but not {WORK_KEY} to say what they were made from; give a fresh --work"
        )
    write_text_atomic(recorded, json.dumps(key, indent=1) + "\n")


def measure(model, size: int, args) -> None:
    report = {"date": datetime.date.today().isoformat(), "checkpoint": args.ckpt_path, "tile_size": size}
    report.update(sets=args.sets, tune=args.tune, known=args.known)
    if args.only != "splices":
        report["unknown"] = measure_unknown(model, size, args)
    if args.only != "unknown":
        report["splices"] = measure_splices(model, size, args)
    # NaN (an AUROC of one kind of photo only) is written as null: JSON has no such number.
    write_json_atomic(args.json, report)
    print(json_text(report), end="")
