import numpy as np

from camlit.training.plots import CELL, confusion_matrix_image


def cell_corner(image: np.ndarray, n: int, i: int, j: int) -> np.ndarray:
    """The top-left pixel of cell (i, j); the grid ends 10 px before the bottom and right edges."""
    height, width = image.shape[:2]
    return image[height - 10 - (n - i) * CELL + 1, width - 10 - (n - j) * CELL + 1]


def test_cells_are_shaded_by_the_share_of_their_true_class():
    matrix = np.array([[3, 1, 0], [0, 0, 0], [0, 2, 2]])
    image = confusion_matrix_image(matrix, ["a", "b", "c"])
    shares = {(0, 0): 0.75, (0, 1): 0.25, (0, 2): 0.0, (1, 1): 0.0, (2, 1): 0.5, (2, 2): 0.5}
    for (i, j), share in shares.items():
        red, green, blue = cell_corner(image, 3, i, j).tolist()
        assert blue == 255 and red == green == int(255 * (1 - share)), (i, j)


def test_long_class_names_widen_the_picture_instead_of_being_cut():
    short = confusion_matrix_image(np.eye(2, dtype=int), ["a", "b"])
    long = confusion_matrix_image(np.eye(2, dtype=int), ["a", "Samsung-Galaxy-Note3"])
    assert long.shape[0] > short.shape[0] and long.shape[1] > short.shape[1]
    assert long.dtype == np.uint8 and long.shape[2] == 3
