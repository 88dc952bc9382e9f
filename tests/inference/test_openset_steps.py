import numpy as np

from camlit.data.quantization import FREQUENCIES
from camlit.data.undo import TABLE_COLUMNS
from camlit.inference.openset_steps import split_steps, step_mismatch


def test_the_mismatch_is_the_share_of_steps_off_the_nearest_table_in_every_chunk():
    rng = np.random.default_rng(0)
    bank = rng.integers(2, 30, size=(2, len(FREQUENCIES)))
    steps = bank[rng.integers(0, 2, size=600)].copy()
    # Photo i differs from its own table at i % 10 frequencies, far from the other table's too.
    for i, row in enumerate(steps):
        row[: i % 10] += 100
    chunked = step_mismatch(steps, bank, chunk=7)
    np.testing.assert_allclose(chunked, np.arange(600) % 10 / len(FREQUENCIES))
    np.testing.assert_array_equal(chunked, step_mismatch(steps, bank))


def test_a_step_a_photo_does_not_show_is_no_evidence_only_where_asked():
    bank = np.full((1, len(FREQUENCIES)), 6)
    photo = np.full(len(FREQUENCIES), 6)
    photo[:9] = 0  # not shown
    photo[9] = 7  # shown, and off the table
    every, shown = step_mismatch(np.stack([photo, photo]), bank, np.array([False, True]))
    assert every == 10 / 27 and shown == 1 / 18
    assert step_mismatch(np.zeros((1, len(FREQUENCIES))), bank, np.array([True]))[0] == 0


def test_the_steps_are_split_from_the_features_they_ride_with():
    features, table = np.ones((3, 5)), np.arange(TABLE_COLUMNS, dtype=float)
    crops, steps, undone = split_steps([np.hstack([features, np.tile(table, (3, 1))])])
    np.testing.assert_array_equal(crops[0], features)
    np.testing.assert_array_equal(steps[0], table[: len(FREQUENCIES)])
    assert undone[0] == table[-1]
