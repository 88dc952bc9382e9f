"""Random label-free scenes for the synthetic cameras (camlit.data.synthetic): linear RGB, with
flat fills, gradients, gratings and textures, anti-aliased shapes and lines, uneven light and a
lens's blur. Nothing of a camera enters a scene.
"""

from __future__ import annotations

import cv2
import numpy as np

SCENE_STREAM = 0  # the random stream of a scene's seed (camlit.data.synthetic draws noise from another)


def fill(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A flat colour, a gradient, a grating or a blotchy texture between two random colours."""
    # Uniform in gamma-encoded values, then linearised: dark tones are common, as in photos.
    first, second = (rng.uniform(0.03, 1.0, (2, 3)) ** 2.2).astype(np.float32)
    # Mostly smooth fills, as in photos: they are where sensor noise and demosaicing show plainest.
    kind = rng.choice(4, p=(0.35, 0.3, 0.15, 0.2))
    if kind == 0:
        return np.full((height, width, 3), first)
    angle = rng.uniform(0, 2 * np.pi)
    rows = np.arange(height, dtype=np.float32)[:, None] * np.float32(np.sin(angle))
    along = np.arange(width, dtype=np.float32) * np.float32(np.cos(angle)) + rows
    if kind == 1:
        mix = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    elif kind == 2:
        frequency, phase = rng.uniform((0.1, 0), (0.6, 2 * np.pi)).astype(np.float32)
        mix = 0.5 + 0.5 * np.sin(along * frequency + phase)
    else:
        cell = int(rng.integers(6, 30))
        coarse = rng.random((height // cell + 2, width // cell + 2), dtype=np.float32)
        mix = np.clip(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC), 0, 1)
    # Channel by channel: numpy broadcasting over a last axis of 3 is several times slower.
    return cv2.merge([mix * np.float32(b - a) + np.float32(a) for a, b in zip(first, second, strict=True)])


def paint_shape(rng: np.random.Generator, image: np.ndarray) -> None:
    """Blend one anti-aliased polygon or ellipse (some thin as a line) with a random fill into `image`."""
    height, width = image.shape[:2]
    centre = rng.uniform((0, 0), (width, height))
    radius = width * np.exp(rng.uniform(np.log(0.02), np.log(0.4)))
    if rng.random() < 0.5:  # polygon
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 9))))
        axes = radius * rng.uniform(0.4, 1.0, (angles.size, 1))
    else:  # ellipse, down to a line half a pixel wide: sharp edges and thin lines
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        # min: a frame of a few pixels has shapes under half a pixel (a draw from 0.5 failed there).
        axes = np.array([radius, np.exp(rng.uniform(np.log(min(0.5, radius)), np.log(radius)))])
    local = axes * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    turn = rng.uniform(0, 2 * np.pi)
    points = centre + local @ np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    left, top = np.maximum(np.floor(points.min(axis=0)).astype(int), 0)
    right, bottom = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 1, (width, height))
    if right <= left or bottom <= top:
        return
    mask = np.zeros((bottom - top, right - left), np.uint8)
    # 4 fractional bits: sub-pixel vertices give real anti-aliased edges.
    cv2.fillPoly(mask, [np.round((points - (left, top)) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    alpha, region = mask.astype(np.float32) / np.float32(255), image[top:bottom, left:right]
    region[...] = cv2.blendLinear(fill(rng, *mask.shape), region, alpha, 1 - alpha)


def render_scene(scene_seed: int, width: int = 1024, height: int = 768) -> np.ndarray:
    """A random linear-RGB float32 scene, highlights above 1.0 included; no camera parameter enters it."""
    rng = np.random.default_rng([scene_seed, SCENE_STREAM])
    scene = fill(rng, height, width)
    for _ in range(rng.integers(8, 30)):
        paint_shape(rng, scene)
    shading = rng.uniform(0.5, 1.5, (3, 4)).astype(np.float32)  # uneven light, and exposure below
    shading = cv2.resize(shading, (width, height), interpolation=cv2.INTER_CUBIC) * rng.uniform(0.6, 1.2)
    scene *= shading[..., None]
    # A little optical blur, so edges are band-limited as a lens makes them before the CFA samples.
    return cv2.GaussianBlur(scene, (0, 0), rng.uniform(0.7, 1.2))
