"""The camera map as one PNG a person reads at a glance.

Panels, left to right: the photo; the tile map, each tile's centre cell coloured by its camera
with the confidence as opacity, unjudged (flat or clipped) tiles hatched grey; the region judged
foreign, outlined in red (and, for measuring, the true mask). A legend below names the cameras.
"""

from __future__ import annotations

import cv2
import numpy as np

from camlit.forensics.camera_map import CameraMap
from camlit.forensics.splice import SpliceResult

# Tableau's ten categorical colours (RGB); more classes wrap around.
PALETTE = np.array(
    [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
     (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)],
    dtype=np.float32,
)  # fmt: skip
PANEL = 384  # panel width in the picture; the analysis itself never resizes
FONT = cv2.FONT_HERSHEY_SIMPLEX
RED = (230, 30, 30)


def tile_layer(camera_map: CameraMap) -> tuple[np.ndarray, np.ndarray]:
    """(colour HxWx3 float, opacity HxW float) at the photo's size: each tile's central
    stride x stride cell, which no other tile's centre cell overlaps."""
    height, width = camera_map.shape
    colour = np.zeros((height, width, 3), np.float32)
    opacity = np.zeros((height, width), np.float32)
    quarter = camera_map.size // 4
    labels = camera_map.probabilities.argmax(axis=-1)
    confidence = camera_map.probabilities.max(axis=-1)
    reliable = camera_map.reliable
    for row, top in enumerate(camera_map.tops):
        for col, left in enumerate(camera_map.lefts):
            cell = np.s_[top + quarter : top + 3 * quarter, left + quarter : left + 3 * quarter]
            if reliable[row, col]:
                colour[cell] = PALETTE[labels[row, col] % len(PALETTE)]
                opacity[cell] = 0.25 + 0.75 * confidence[row, col]
            else:
                colour[cell] = 160
                opacity[cell] = hatch(colour[cell].shape[:2])
    return colour, opacity


def hatch(shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.indices(shape)
    return np.where((rows + cols) % 8 < 2, 0.9, 0.15).astype(np.float32)


def blend(image: np.ndarray, colour: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    mixed = image.astype(np.float32) * (1 - opacity[..., None]) + colour * opacity[..., None]
    return np.clip(mixed, 0, 255).astype(np.uint8)


def outlined(image: np.ndarray, mask: np.ndarray, colour=RED) -> np.ndarray:
    """The photo dimmed outside `mask`, the mask's outline drawn in `colour`."""
    shown = np.where(mask[..., None], image, (image * 0.35).astype(np.uint8)).copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(shown, contours, -1, colour, max(2, image.shape[1] // 200))
    return shown


def titled(panel: np.ndarray, title: str) -> np.ndarray:
    scale = PANEL / panel.shape[1]
    panel = cv2.resize(panel, (PANEL, max(1, round(panel.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    header = np.full((26, PANEL, 3), 255, np.uint8)
    cv2.putText(header, title, (6, 18), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, panel])


def legend(classes: list[str], width: int, lines: list[str]) -> np.ndarray:
    per_row = max(1, width // 190)
    rows = -(-len(classes) // per_row)
    image = np.full((14 + 22 * (rows + len(lines)), width, 3), 255, np.uint8)
    for index, name in enumerate(classes):
        y, x = 8 + 22 * (index // per_row), 8 + 190 * (index % per_row)
        cv2.rectangle(image, (x, y), (x + 14, y + 14), PALETTE[index % len(PALETTE)].tolist(), -1)
        cv2.putText(image, name, (x + 20, y + 12), FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    for index, line in enumerate(lines):
        y = 8 + 22 * (rows + index) + 12
        cv2.putText(image, line, (8, y), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def camera_map_picture(
    image: np.ndarray, camera_map: CameraMap, result: SpliceResult, truth: np.ndarray | None = None
) -> np.ndarray:
    """HxWx3 uint8 RGB: photo, tile map, foreign region (and the true mask when given), legend."""
    panels = [titled(image, "photo"), titled(blend(image, *tile_layer(camera_map)), "camera per tile")]
    found = "foreign region" if result.spliced else "no foreign region"
    panels.append(titled(outlined(image, result.mask), f"{found} ({result.method})"))
    if truth is not None:
        panels.append(titled(outlined(image, truth, (40, 200, 40)), "true mask"))
    top = np.hstack(panels)
    return np.vstack([top, legend(camera_map.classes, top.shape[1], verdict_lines(camera_map, result))])


def verdict_lines(camera_map: CameraMap, result: SpliceResult) -> list[str]:
    """The lines under the legend: the photo's camera and score, and how many tiles were left unjudged."""
    if camera_map.reliable.any():
        verdict = f"own camera: {camera_map.classes[result.own]}; photo score {result.photo_score:.3g}"
        verdict += f"; foreign tiles look like {camera_map.classes[result.foreign]}" if result.spliced else ""
    else:
        verdict = "no tile to judge: no own camera and no photo score"
    unjudged = int((~camera_map.reliable).sum())
    return [
        verdict,
        f"opacity: confidence; hatched grey: {unjudged} of {camera_map.reliable.size} tiles too flat "
        "or clipped to judge",
    ]
