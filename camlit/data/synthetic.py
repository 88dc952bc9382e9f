"""A synthetic stand-in for Kaggle's camera data: ten simulated cameras, random label-free scenes.

A scene is rendered as linear RGB from its own seed, with no camera parameter, then taken by one
camera: colour filter array, shot and read noise on the raw mosaic, demosaicing, colour matrix,
tone curve, unsharp mask, JPEG. Only those traces tell the classes apart.
"""

from __future__ import annotations

import json
import os
from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from camlit.atomic import require_writable, write_bytes_atomic, write_csv_atomic
from camlit.cameras import KAGGLE_CAMERAS
from camlit.data.crops import center_crop
from camlit.data.manipulations import MANIPULATED, MANIPULATIONS, UNALTERED, Kind, apply
from camlit.data.scenes import render_scene
from camlit.errors import CamlitError
from camlit.imageio import MAX_PIXELS, to_rgb8, write_image_atomic
from camlit.workers import in_parallel

NOISE_STREAM = 1
CHROMA = {name: getattr(cv2, f"IMWRITE_JPEG_SAMPLING_FACTOR_{name}") for name in ("420", "422", "444")}
DEMOSAIC_SUFFIX = {"bilinear": "", "vng": "_VNG", "ea": "_EA"}


@dataclass(frozen=True)
class CameraSpec:
    """One simulated camera's processing pipeline, in the order it runs."""

    name: str
    cfa: str  # 2x2 colour filter layout read row by row: RGGB, BGGR, GRBG or GBRG
    demosaic: str  # OpenCV's "bilinear", "vng" (variable number of gradients) or "ea" (edge-aware)
    shot_noise: float  # photon noise variance per unit of linear signal
    read_noise: float  # signal-independent noise std, linear units (1.0 = full well)
    saturation: float  # s of the colour matrix (1 + s) I - s 1 w^T, w = Rec.601 luma weights
    gamma: float  # tone curve x ** (1 / gamma) ...
    contrast: float  # ... blended with a smoothstep S-curve by this weight
    sharpen: float  # unsharp-mask amount, 0 for none
    sharpen_sigma: float  # unsharp-mask Gaussian sigma, pixels
    jpeg_quality: int
    chroma: str  # JPEG chroma subsampling: "420", "422" or "444"

    @property
    def colour_matrix(self) -> np.ndarray:
        """Camera RGB to output RGB; rows sum to 1, so grey stays grey and only saturation moves."""
        grey = np.outer(np.ones(3), [0.299, 0.587, 0.114])
        return ((1 + self.saturation) * np.eye(3) - self.saturation * grey).astype(np.float32)

    @property
    def jpeg_params(self) -> list[int]:
        sampling = cv2.IMWRITE_JPEG_SAMPLING_FACTOR
        return [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality, sampling, CHROMA[self.chroma]]


# Every JPEG quality and noise level is used once, and cameras sharing a CFA layout differ in
# demosaicing and chroma subsampling too: every pair differs in at least three of those five traces.
SYNTHETIC_CAMERAS: tuple[CameraSpec, ...] = (
    # name, CFA, demosaic, shot, read, saturation, gamma, contrast, sharpen, sigma, JPEG quality, chroma
    CameraSpec("HTC-1-M7", "GRBG", "bilinear", 7.5e-4, 0.0038, 0.5, 2.2, 0.20, 0.6, 1.0, 90, "422"),
    CameraSpec("LG-Nexus-5x", "BGGR", "ea", 2e-4, 0.0018, 0.7, 2.2, 0.10, 0.3, 0.8, 96, "422"),
    CameraSpec("Motorola-Droid-Maxx", "RGGB", "vng", 5.5e-4, 0.0032, 0.4, 2.1, 0.30, 1.0, 1.2, 80, "422"),
    CameraSpec("Motorola-Nexus-6", "GBRG", "vng", 3e-4, 0.0024, 0.8, 2.3, 0.00, 0.0, 1.0, 92, "444"),
    CameraSpec("Motorola-X", "GRBG", "ea", 2e-3, 0.0060, 0.3, 2.1, 0.20, 0.0, 1.0, 75, "420"),
    CameraSpec("Samsung-Galaxy-Note3", "RGGB", "bilinear", 25e-5, 0.0021, 0.6, 2.3, 0.3, 1.2, 0.7, 88, "420"),
    CameraSpec("Samsung-Galaxy-S4", "BGGR", "vng", 1e-3, 0.0045, 0.9, 2.2, 0.25, 0.5, 1.0, 85, "420"),
    CameraSpec("Sony-NEX-7", "RGGB", "ea", 1.5e-4, 0.0015, 0.5, 2.2, 0.15, 0.2, 1.5, 98, "444"),
    CameraSpec("iPhone-4s", "GBRG", "bilinear", 1.4e-3, 0.0050, 0.4, 2.0, 0.10, 0.8, 0.9, 78, "420"),
    CameraSpec("iPhone-6", "BGGR", "bilinear", 4e-4, 0.0027, 0.6, 2.4, 0.20, 0.4, 0.8, 95, "444"),
)


Camera = int | CameraSpec  # an index into SYNTHETIC_CAMERAS, or a spec of one's own


DECOMPAND = ((np.arange(256) / 255.0) ** 2).astype(np.float32)
TONE_STEPS = 4096  # the tone curve is a 12-bit lookup table, as in camera ISPs


def develop(spec: CameraSpec, scene: np.ndarray, noise_seed: int) -> np.ndarray:
    """What camera `spec` makes of linear `scene` before JPEG: RGB uint8."""
    matrix = spec.colour_matrix
    # The sensor sees desaturated colour (the inverse colour matrix), which the ISP undoes later.
    sensor = np.clip(cv2.transform(scene, np.linalg.inv(matrix)), 0, 1)
    mosaic = np.empty(scene.shape[:2], np.float32)
    for phase, letter in enumerate(spec.cfa):
        row, col = divmod(phase, 2)
        mosaic[row::2, col::2] = sensor[row::2, col::2, "RGB".index(letter)]
    noise = np.random.default_rng([noise_seed, NOISE_STREAM]).standard_normal(mosaic.shape, dtype=np.float32)
    mosaic += np.sqrt(spec.shot_noise * mosaic + spec.read_noise**2) * noise
    # 8-bit raw, as OpenCV's VNG needs; square-root companding keeps quantisation under shot noise.
    raw = (np.sqrt(np.clip(mosaic, 0, 1)) * 255 + 0.5).astype(np.uint8)
    code = getattr(cv2, f"COLOR_Bayer{spec.cfa}2RGB{DEMOSAIC_SUFFIX[spec.demosaic]}")
    rgb = np.clip(cv2.transform(cv2.LUT(cv2.demosaicing(raw, code), DECOMPAND), matrix), 0, 1)
    level = np.linspace(0, 1, TONE_STEPS, dtype=np.float32) ** np.float32(1 / spec.gamma)
    curve = level + np.float32(spec.contrast) * (level * level * (3 - 2 * level) - level)  # S-curve blend
    toned = curve[(rgb * (TONE_STEPS - 1) + 0.5).astype(np.int32)]
    if spec.sharpen:
        toned += spec.sharpen * (toned - cv2.GaussianBlur(toned, (0, 0), spec.sharpen_sigma))
    return (np.clip(toned, 0, 1) * 255 + 0.5).astype(np.uint8)


def encode_photo(camera: Camera, scene_seed: int, width: int = 1024, height: int = 768) -> bytes:
    """The camera's JPEG file of scene `scene_seed`, as bytes."""
    spec = camera if isinstance(camera, CameraSpec) else SYNTHETIC_CAMERAS[camera]
    rgb = develop(spec, render_scene(scene_seed, width, height), scene_seed)
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), spec.jpeg_params)[1].tobytes()


def render_photo(camera: Camera, scene_seed: int, width: int = 1024, height: int = 768) -> np.ndarray:
    """The decoded pixels of `encode_photo`: HxWx3 RGB uint8."""
    data = np.frombuffer(encode_photo(camera, scene_seed, width, height), np.uint8)
    return to_rgb8(cv2.imdecode(data, cv2.IMREAD_UNCHANGED))


def scene_seed(seed: int, split: int, camera: int, index: int) -> int:
    # Hashed, so a photo keeps its scene when the counts change; the camera only picks a stream.
    return int(np.random.SeedSequence([seed, split, camera, index]).generate_state(1, np.uint64)[0])


JPEG_SIDE = 65_535


def kaggle_crop_size(width: int, height: int) -> int:
    """512, or less: all test crops share one size, as in Kaggle, so it must fit the smallest
    manipulated frame (after resize0.5). 384 for 1024x768 frames; 512 needs a short side of 1024."""
    smallest = min((m for m in MANIPULATIONS.values() if m.kind is Kind.RESIZE), key=lambda m: m.parameter)
    small_height, small_width = smallest.output_shape(height, width)
    return min(512, min(small_height, small_width) // 2 * 2)


# One output file: a train frame (manipulation None) or a test crop; size is (width, height).
Job = namedtuple("Job", "path camera scene_seed size manipulation", defaults=(None,))


def plan(output: Path, images_per_camera: int, test_per_camera: int, width: int, height: int, seed: int):
    """The jobs of a set, and its test rows (fname, camera, manipulation) sorted by fname."""
    size, cameras = (width, height), len(KAGGLE_CAMERAS)
    rng = np.random.default_rng([seed, 2])
    # Random ids, so neither a file name nor the sorted order tells the camera.
    ids = iter(rng.choice(16**7, size=test_per_camera * cameras, replace=False))
    jobs, rows = [], []
    for camera, name in enumerate(KAGGLE_CAMERAS):
        for k in range(images_per_camera):
            path = output / "train" / name / f"{name}_{k}.jpg"
            jobs.append(Job(path, camera, scene_seed(seed, 0, camera, k), size))
        # Every other photo is manipulated, each camera's cycling through the eight manipulations,
        # so every manipulation is used equally often (exactly, when 16 divides test_per_camera).
        manipulations = iter(rng.permutation(np.resize(MANIPULATED, test_per_camera // 2)))
        for k in range(test_per_camera):
            manipulation = str(next(manipulations)) if k % 2 else UNALTERED
            path = output / "test" / f"img_{next(ids):07x}_{'manip' if k % 2 else 'unalt'}.tif"
            jobs.append(Job(path, camera, scene_seed(seed, 1, camera, k), size, manipulation))
            rows.append((path.name, name, manipulation))
    return jobs, sorted(rows)


def make_file(job: Job) -> None:
    if job.manipulation is None:
        write_bytes_atomic(job.path, encode_photo(job.camera, job.scene_seed, *job.size))
    else:
        # Kaggle's order: manipulate the whole decoded photo, then take the centre crop.
        photo = apply(job.manipulation, render_photo(job.camera, job.scene_seed, *job.size))
        write_image_atomic(job.path, center_crop(photo, kaggle_crop_size(*job.size)))


def is_complete(output: str | os.PathLike) -> bool:
    """Whether `make_synthetic` finished writing the set in `output`."""
    return (Path(output) / ".complete").is_file()


def require_made_as_fit_makes(output: str | os.PathLike, images_per_camera: int) -> None:
    """A finished set in `output` made as fit would make it with `images_per_camera`: fit trained on
    one made by hand with other counts or frames, its settings never read."""
    try:
        made = (Path(output) / SETTINGS).read_bytes().decode(errors="replace").strip()
    except OSError:
        made = "nothing"
    wanted = json.dumps([images_per_camera, DEFAULT_TEST_PER_CAMERA, *DEFAULT_FRAME, 0])
    if made != wanted:
        raise CamlitError(
            f"--data.synthetic_root {output}: holds a synthetic set made with other settings ({SETTINGS} says "
            f"{made}, fit makes {wanted}); to train on it as it is, give --data.train_dir {Path(output) / 'train'} "
            "--data.synthetic_root null, or name another --data.synthetic_root"
        )


def write_missing(
    output: Path,
    settings: list,
    marker: str,
    what: str,
    option: str,
    jobs: list[Job],
    workers: int | None,
    progress: bool,
) -> None:
    """Write the photos of `jobs` not yet in `output`, after checking that the set was started with
    these `settings` (kept in `marker`), so that an interrupted run can be finished, never mixed.
    A folder camlit did not start must be new or empty."""
    encoded = json.dumps(settings).encode()
    settings_path = output / marker
    theirs = sorted(output.iterdir()) if output.is_dir() and not settings_path.is_file() else []
    if theirs:
        # A real download: the set's photos went in among its own, and files of its names were
        # counted as made or replaced.
        more = f" and {len(theirs) - 1} more" if len(theirs) > 1 else ""
        raise CamlitError(
            f"{output}: holds {theirs[0].name}{more} but no {marker}, so it is no {what.removeprefix('a ')} "
            "camlit started; write the set into a new or empty folder"
        )
    if settings_path.is_file() and settings_path.read_bytes() != encoded:
        raise CamlitError(
            f"{output} holds {what} made with other settings ({marker} says {settings_path.read_text()}, "
            f"not {encoded.decode()}); write it into another folder"
        )
    require_writable(output, option, folder=True)
    output.mkdir(parents=True, exist_ok=True)
    # First, so that a set stopped at any later point is one camlit started.
    write_bytes_atomic(settings_path, encoded)
    for folder in [output / "test", *(output / "train" / name for name in KAGGLE_CAMERAS)]:
        folder.mkdir(parents=True, exist_ok=True)
    (output / ".complete").unlink(missing_ok=True)
    todo = [(job,) for job in jobs if not job.path.exists()]
    progress_name = f"{what.removeprefix('a ')} photos" if progress else None
    for _ in in_parallel(make_file, todo, workers or os.cpu_count() or 1, progress_name):
        pass


# Test photos per camera of the demo's set: 480 in all, so one photo is 0.2 points.
DEFAULT_TEST_PER_CAMERA = 48
DEFAULT_FRAME = (1024, 768)
# The settings a set was started with, written first; a rerun with others is refused.
SETTINGS = ".synthetic.json"


def make_synthetic(
    output: Path,
    images_per_camera: int = 30,
    test_per_camera: int = DEFAULT_TEST_PER_CAMERA,
    width: int = DEFAULT_FRAME[0],
    height: int = DEFAULT_FRAME[1],
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write a Kaggle-shaped synthetic set into `output` and return it.

    - ``train/<camera>/<camera>_<k>.jpg``: full frames, the camera's own JPEG bytes;
    - ``test/img_<id>_unalt.tif`` / ``img_<id>_manip.tif``: lossless `kaggle_crop_size` centre crops
      of further photos; every other photo of each camera is first manipulated whole;
    - ``test_labels.csv`` (fname,camera) and ``test_manipulations.csv`` (fname,manipulation);
    - ``.synthetic.json`` (counts, size, seed) first and ``.complete`` last.

    A rerun skips the files already there, so an interrupted run can be finished; a folder made
    with other settings is refused. The same settings give the same bytes.
    """
    output = Path(output)
    if min(images_per_camera, test_per_camera) < 0:
        raise CamlitError(
            f"--images_per_camera {images_per_camera} --test_per_camera {test_per_camera}: must not be negative"
        )
    if seed < 0:
        raise CamlitError(f"--seed must not be negative, got {seed}")
    if kaggle_crop_size(width, height) < 2:
        raise CamlitError(f"--width {width} --height {height}: frames too small for a test crop")
    # A JPEG's side is at most 65,535, and camlit reads no image over MAX_PIXELS: refused before the
    # settings file is written (a frame too large for memory left one that refused every rerun).
    if max(width, height) > JPEG_SIDE or width * height > MAX_PIXELS:
        raise CamlitError(
            f"--width {width} --height {height}: frames too large (at most {JPEG_SIDE} a side, {MAX_PIXELS:,} pixels)"
        )
    if not images_per_camera and not test_per_camera:
        raise CamlitError("--images_per_camera and --test_per_camera are both 0: nothing to write")
    jobs, rows = plan(output, images_per_camera, test_per_camera, width, height, seed)
    settings = [images_per_camera, test_per_camera, width, height, seed]
    tables = ("test_labels.csv", "test_manipulations.csv")
    write_missing(output, settings, SETTINGS, "a synthetic set", "--output", jobs, workers, progress)
    header = ("fname", "camera", "manipulation")
    for column, name in enumerate(tables, start=1):
        write_csv_atomic(output / name, [(row[0], row[column]) for row in [header, *rows]])
    (output / ".complete").write_bytes(b"")
    return output
