import numpy as np

from camlit.forensics.camera_map import CameraMap
from camlit.forensics.picture import camera_map_picture, verdict_lines
from camlit.forensics.splice import SpliceResult

CLASSES = ["a", "b", "c"]


def camera_map(flat: bool) -> CameraMap:
    """A 64x64 photo's 3x3 grid of 32 px tiles, every tile camera 1, all flat or none."""
    probabilities = np.tile(np.array([0.1, 0.8, 0.1], np.float32), (3, 3, 1))
    grid = np.full((3, 3), flat)
    return CameraMap(
        CLASSES, (64, 64), 32, np.arange(3) * 16, np.arange(3) * 16, probabilities, np.log(probabilities),
        np.zeros((3, 3, 4), np.float32), grid, np.zeros((3, 3), bool),
    )  # fmt: skip


def result(score: float) -> SpliceResult:
    return SpliceResult("disagreement", np.zeros((3, 3)), score, own=0, foreign=0, mask=np.zeros((64, 64), bool))


def test_a_photo_with_no_tile_to_judge_names_no_camera_and_no_score():
    """The picture said "own camera: a; photo score -inf" where the summary says no camera."""
    lines = verdict_lines(camera_map(flat=True), result(float("-inf")))
    assert lines[0] == "no tile to judge: no own camera and no photo score"
    assert "9 of 9 tiles" in lines[1]
    picture = camera_map_picture(np.full((64, 64, 3), 128, np.uint8), camera_map(flat=True), result(float("-inf")))
    assert picture.dtype == np.uint8 and picture.ndim == 3


def test_a_judged_photo_names_its_camera_and_score():
    lines = verdict_lines(camera_map(flat=False), result(0.25))
    assert lines[0] == "own camera: a; photo score 0.25"
    assert "0 of 9 tiles" in lines[1]
