"""The benchmark's forensics section: each photo's camera table (camlit.data.undo), read in
the prediction loader's workers as `camlit predict --unknown` and `camlit calibrate` read it, with
numpy's BLAS on one thread per worker (camlit's `one_blas_thread`) and on its default threads (a
thread per core in every worker)."""

from __future__ import annotations

import time
from pathlib import Path

from torch.utils.data import DataLoader

from camlit.benchmark.sections import interleaved
from camlit.data.undo import camera_table
from camlit.inference.tta import CollateCrops, CropPlan, PredictCrops
from camlit.workers import one_blas_thread


def camera_table_section(photos: Path, crop: int, workers: int, repeats: int, figures: dict, notes: dict) -> None:
    """Photos per second through `workers` loader workers, each way, in alternate rounds; the median."""
    paths = sorted(photos.rglob("*.jpg"))
    dataset = PredictCrops(paths, CropPlan(size=crop, count=1), describe=camera_table)

    def rate(init) -> float:
        loader = DataLoader(dataset, num_workers=workers, worker_init_fn=init, collate_fn=CollateCrops())
        start = time.perf_counter()
        for _ in loader:
            pass
        return len(paths) / (time.perf_counter() - start)

    variants = {"forensics/camera_table_one_blas_thread": lambda: rate(one_blas_thread),
                "forensics/camera_table_default_blas": lambda: rate(None)}  # fmt: skip
    figures.update(interleaved(variants, repeats, 1, notes))
    notes["forensics"] = f"{len(paths)} JPEG photos, {workers} loader worker(s); photos/s over the whole pass"
