"""Undoing a manipulation, to read the camera's own JPEG table again (camlit.data.quantization).

The camera's quantization steps show in a photo's pixels only while nothing has touched them since
the camera's JPEG was decoded. Two of Kaggle's manipulations can be undone closely enough to read
them again:

- ``gamma0.8`` / ``gamma1.2``, a 256-entry table: each output value goes back to the mean of the
  inputs that give it. A photo that went through the table holds only the table's output values;
  a photo that did not holds the values the table skips too.
- ``resize1.5`` / ``resize2.0``, bicubic upscaling: the resize is linear, and from more output
  pixels than source ones its least-squares inverse gives the source back to within rounding.
  Where the crop starts on the source grid is unknown (a fraction of a source pixel, one of a
  few): at the right phase the inverse explains the photo to within rounding, at the others it
  does not, which also tells an upscaled photo from one that was not.

Downscaling keeps fewer pixels than the camera wrote, and a recompression replaces the table:
neither is undone.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache, lru_cache

import numpy as np

from camlit.data.manipulations import NAMES, gamma_table, get
from camlit.data.quantization import FREQUENCIES, centre, steps_and_phase
from camlit.data.recompression import first_steps

GAMMAS = ("gamma0.8", "gamma1.2")
UPSCALES = ("resize1.5", "resize2.0")
# A photo is taken for one that went through a gamma table when at most this share of its
# samples in the range where the table skips values sit on a skipped value (a photo that went
# through the table has none there; one that did not has about as many as the values skipped) ...
SKIPPED_SHARE = 0.002
# ... and at least this share of its samples lie in that range, on at least this share of the
# values the table keeps there, so that the test can fail (a flat photo holds one value).
IN_RANGE_SHARE = 0.02
KEPT_VALUES_SHARE = 0.1
# An upscaled photo: the best phase's residual under this share of the worst's, along both axes,
# and the worst above the rounding (a flat photo fits every phase exactly).
PHASE_CONTRAST = 0.6
MIN_RESIDUAL = 0.15
KEYS = -0.75  # OpenCV's bicubic kernel (Keys, a = -0.75) ...
WEIGHT_BITS = 11  # ... with its weights in fixed point for 8-bit images
# Source pixels near the crop's edges are seen by few output pixels, and the inverse multiplies
# the output's rounding there by up to thousands; kept are those it multiplies by at most this.
MAX_GAIN = 1.5
RESIDUAL_COLUMNS = 64


@cache
def gamma_inverse(name: str) -> np.ndarray:
    """(256,) for each output value of the gamma table, the mean input giving it (NaN if none)."""
    table = gamma_table(get(name).parameter).astype(np.int64)
    inverse = np.full(256, np.nan)
    for value in np.unique(table):
        inverse[value] = np.flatnonzero(table == value).mean()
    return inverse


def went_through(image: np.ndarray, name: str) -> bool:
    """Whether the photo's values are those of gamma table `name`'s output only."""
    skipped = np.isnan(gamma_inverse(name))
    span = np.flatnonzero(skipped)
    counts = np.bincount(image.ravel(), minlength=256)
    in_range = counts[span.min() : span.max() + 1]
    kept = ~skipped[span.min() : span.max() + 1]
    if in_range.sum() < IN_RANGE_SHARE * image.size or (in_range[kept] > 0).mean() < KEPT_VALUES_SHARE:
        return False
    return counts[skipped].sum() <= SKIPPED_SHARE * in_range.sum()


def undo_gamma(image: np.ndarray, name: str) -> np.ndarray:
    inverse = gamma_inverse(name)
    # A skipped value (clipping, say) goes back as its nearest kept neighbour's input.
    kept = np.flatnonzero(~np.isnan(inverse))
    filled = np.interp(np.arange(256), kept, inverse[kept])
    return np.clip(np.round(filled[image]), 0, 255).astype(np.uint8)


def cubic_weights(fraction: np.ndarray) -> np.ndarray:
    """(n, 4) OpenCV's bicubic weights of the source pixels at -1, 0, 1, 2 from floor(x), for the
    fraction x - floor(x), rounded to its fixed point."""
    x, a = fraction, KEYS
    w0 = ((a * (x + 1) - 5 * a) * (x + 1) + 8 * a) * (x + 1) - 4 * a
    w1 = ((a + 2) * x - (a + 3)) * x * x + 1
    w2 = ((a + 2) * (1 - x) - (a + 3)) * (1 - x) * (1 - x) + 1
    weights = np.stack([w0, w1, w2, 1 - w0 - w1 - w2], axis=-1)
    return np.round(weights * 2**WEIGHT_BITS) / 2**WEIGHT_BITS


def resize_matrix(length: int, scale: float, phase: float) -> np.ndarray:
    """(length, sources): the bicubic upscale by `scale` along one axis, for output pixel 0 at
    source coordinate `phase` (0 <= phase < 1); source 0 is the pixel left of floor(phase)."""
    where = phase + np.arange(length) / scale
    first = np.floor(where).astype(np.int64)
    weights = cubic_weights(where - first)
    matrix = np.zeros((length, first.max() + 4))
    for tap in range(4):
        np.add.at(matrix, (np.arange(length), first + tap), weights[:, tap])
    return matrix


@lru_cache(maxsize=16)  # photos of one size share theirs; each is up to 512 x 350
def inverse_of(length: int, scale: float, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """resize_matrix and its least-squares inverse (pseudo-inverse), computed once per shape."""
    matrix = resize_matrix(length, scale, phase)
    return matrix, np.linalg.pinv(matrix)


def phases(scale: float) -> tuple[float, ...]:
    """Where an upscaled crop can start on the source grid: OpenCV samples output pixel o at source
    (o + 0.5) / scale - 0.5, whose fraction repeats every `scale`'s numerator of output pixels."""
    numerator = Fraction(scale).limit_denominator(16).numerator
    return tuple(sorted({float(((o + 0.5) / scale - 0.5) % 1) for o in range(numerator)}))


def phase_residuals(plane: np.ndarray, scale: float) -> np.ndarray:
    """(len(phases),) the rms residual of the least-squares fit of the columns of `plane` by an
    upscale of `scale` at each phase; RESIDUAL_COLUMNS columns spread over it tell the phases
    apart as well as all of them, at a sixth of the work for a 384 px photo."""
    plane = plane[:, :: max(1, plane.shape[1] // RESIDUAL_COLUMNS)]
    residuals = []
    for phase in phases(scale):
        matrix, inverse = inverse_of(plane.shape[0], scale, phase)
        fitted = matrix @ (inverse @ plane)
        residuals.append(np.sqrt(np.mean((plane - fitted) ** 2)))
    return np.array(residuals)


def upscale_phase(image: np.ndarray, scale: float) -> tuple[float, tuple[float, float]]:
    """(contrast, (row phase, column phase)): the photo's best phase each way for an upscale of
    `scale`, and the larger of the two ratios of best to worst residual (small: upscaled)."""
    plane = image.astype(np.float64).mean(axis=2)
    contrast, best = 0.0, []
    for along in (plane, plane.T):
        residuals = phase_residuals(along, scale)
        contrast = max(contrast, residuals.min() / residuals.max() if residuals.max() >= MIN_RESIDUAL else 1.0)
        best.append(phases(scale)[int(residuals.argmin())])
    return contrast, (best[0], best[1])


def trusted(length: int, scale: float, phase: float) -> slice:
    """The source pixels of inverse_of's that it multiplies the output's rounding by MAX_GAIN or less."""
    gain = np.linalg.norm(inverse_of(length, scale, phase)[1], axis=1)
    kept = np.flatnonzero(gain <= MAX_GAIN)
    return slice(int(kept[0]), int(kept[-1]) + 1)


def undo_upscale(image: np.ndarray, scale: float, phase: tuple[float, float]) -> np.ndarray:
    """The trusted source pixels of an upscaled photo, by least squares."""
    (height, width), (row_phase, col_phase) = image.shape[:2], phase
    rows = inverse_of(height, scale, row_phase)[1][trusted(height, scale, row_phase)]
    cols = inverse_of(width, scale, col_phase)[1][trusted(width, scale, col_phase)]
    source = np.einsum("tw,swc->stc", cols, np.einsum("sh,hwc->swc", rows, image.astype(np.float64)))
    return np.clip(np.round(source), 0, 255).astype(np.uint8)


def undo(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(the photo as the camera left it, the manipulation undone), or (the photo, None) where it
    shows none of those that can be undone."""
    for name in GAMMAS:
        if went_through(image, name):
            return undo_gamma(image, name), name
    if min(image.shape[:2]) >= 64:
        found = {name: upscale_phase(image, get(name).parameter) for name in UPSCALES}
        name = min(found, key=lambda n: found[n][0])
        contrast, phase = found[name]
        if contrast < PHASE_CONTRAST:
            return undo_upscale(image, get(name).parameter, phase), name
    return image, None


def without_gamma(image: np.ndarray) -> tuple[np.ndarray, str | None]:
    """(the photo with a gamma it went through undone, the gamma's name): the pixels stay where
    they are, for per-block maps; (the photo itself, None) where it shows none."""
    for name in GAMMAS:
        if went_through(image, name):
            return undo_gamma(image, name), name
    return image, None


def camera_table(image: np.ndarray) -> np.ndarray:
    """(55,) float32: the quantization steps of FREQUENCIES read after `undo` on the photo's
    centre 512 px (as quantization_steps reads); where nothing was undone, the first table of a
    photo saved again whole (camlit.data.recompression.first_steps; 0s where none shows, and
    after an undo); then the number of the manipulation undone in camlit.data.manipulations.NAMES
    (0: none)."""
    photo = centre(image)
    undone, name = undo(photo)
    # Nothing undone: the photo itself, whose grid the steps were just read on.
    steps, phase = steps_and_phase(undone)
    first = np.zeros(len(FREQUENCIES)) if name else first_steps(photo, phase)
    return np.concatenate([steps, first, [NAMES.index(name) if name else 0]]).astype(np.float32)


TABLE_COLUMNS = 2 * len(FREQUENCIES) + 1
