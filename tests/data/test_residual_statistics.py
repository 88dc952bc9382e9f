import pytest
from conftest import one_error_line

from camlit.data.manipulations import MANIPULATIONS
from camlit.data.residual_statistics import main


def test_the_gauge_gives_an_accuracy_per_manipulation(flat_tree):
    results = main(["--data", str(flat_tree), "--crop", "16", "--crops", "2"])
    assert list(results) == list(MANIPULATIONS) and all(0 <= value <= 1 for value in results.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "absent"], "error: absent: no such folder"),
        (["--crop", "0"], "error: --crop must be at least 4, got 0"),
        (["--crops", "0"], "error: --crops must be at least 1, got 0"),
        (["--crop", "1000"], "error: --crop 1000: larger than"),
    ],
)
def test_bad_input_is_one_error_line(flat_tree, capsys, args, message):
    """Each was a traceback: a CamlitError, an OpenCV assertion, a ValueError."""
    line = one_error_line(capsys, lambda: main(["--data", str(flat_tree), *args]))
    assert line.startswith(message)
