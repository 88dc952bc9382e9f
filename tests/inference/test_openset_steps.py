import numpy as np

from camlit.data.quantization import FREQUENCIES
from camlit.data.undo import TABLE_COLUMNS
from camlit.inference.openset_steps import first_mismatch, split_steps, step_mismatch


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
    crops, steps, first, undone = split_steps([np.hstack([features, np.tile(table, (3, 1))])])
    np.testing.assert_array_equal(crops[0], features)
    np.testing.assert_array_equal(steps[0], table[: len(FREQUENCIES)])
    np.testing.assert_array_equal(first[0], table[len(FREQUENCIES) : 2 * len(FREQUENCIES)])
    assert undone[0] == table[-1]


def test_a_first_table_is_compared_where_it_shows_three_steps_or_more():
    bank = np.zeros((2, len(FREQUENCIES)))
    bank[0, :4], bank[1, :4] = [5, 6, 7, 8], [9, 9, 9, 9]
    photos = np.zeros((4, len(FREQUENCIES)))
    photos[0, :4] = [5, 6, 7, 8]  # a bank row's
    photos[1, :4] = [5, 6, 7, 11]  # one of four steps off the nearest row
    photos[2, :2] = [13, 13]  # two steps: not compared
    mismatch = first_mismatch(photos, bank)  # photo 3 shows none
    np.testing.assert_allclose(mismatch, [0, 0.25, 0, 0])
    assert (first_mismatch(photos, np.zeros((0, len(FREQUENCIES)))) == 0).all()
