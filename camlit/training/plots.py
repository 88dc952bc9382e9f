"""A confusion-matrix picture drawn with OpenCV, for TensorBoard and for evaluate's PNG."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CELL = 44
FONT = cv2.FONT_HERSHEY_SIMPLEX


def confusion_matrix_image(matrix: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """HxWx3 uint8 RGB: rows are true classes, columns predicted, shaded by row-normalised counts."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(names)
    label_width = 10 + max(cv2.getTextSize(name, FONT, 0.45, 1)[0][0] for name in names)
    top = label_width + 30
    left = label_width + 30
    image = np.full((top + n * CELL + 10, left + n * CELL + 10, 3), 255, np.uint8)
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    for i in range(n):
        for j in range(n):
            y, x = top + i * CELL, left + j * CELL
            shade = int(255 * (1 - shares[i, j]))
            cv2.rectangle(image, (x, y), (x + CELL - 1, y + CELL - 1), (shade, shade, 255), -1)
            colour = (255, 255, 255) if shares[i, j] > 0.5 else (0, 0, 0)
            text = str(matrix[i, j])
            (w, h), _ = cv2.getTextSize(text, FONT, 0.4, 1)
            cv2.putText(image, text, (x + (CELL - w) // 2, y + (CELL + h) // 2), FONT, 0.4, colour, 1, cv2.LINE_AA)
        cv2.putText(image, names[i], (5, top + i * CELL + CELL // 2 + 5), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    # Column names run vertically: draw them on a strip and rotate it.
    strip = np.full((CELL * n, label_width + 20, 3), 255, np.uint8)
    for j in range(n):
        cv2.putText(strip, names[j], (5, CELL * j + CELL // 2 + 5), FONT, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    image[10 : 10 + strip.shape[1], left : left + CELL * n] = np.rot90(strip)
    cv2.putText(image, "true \\ predicted", (5, top - 8), FONT, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
    return image
