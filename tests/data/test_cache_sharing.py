"""A cache folder shared with other files and with other runs: nothing of theirs is removed."""

import gc

import torch
from conftest import CLASSES, epoch_batches
from conftest import make_datamodule as make

from camlit.data.cache import build_cache
from camlit.data.samples import scan


def test_the_cache_never_removes_files_it_did_not_write(flat_tree, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    foreign = {
        name: name.encode()
        for name in (
            "images-list.txt", "notes.tmpl", "budget.tmp.xlsx", "index.npz", ".lock", "images-old.u8",
            ".images-list.txt.tmp1", "index-of-photos.npz",
        )
    }  # fmt: skip
    for name, data in foreign.items():
        (folder / name).write_bytes(data)
    paths = [s.path for s in scan(flat_tree, CLASSES)]
    build_cache(folder, paths, 32)
    # Another fingerprint makes the first cache stale, and its files are removed: its own, no others.
    build_cache(folder, paths, 16)
    for name, data in foreign.items():
        assert (folder / name).read_bytes() == data, name
    own = sorted(p.name for p in folder.iterdir() if p.name not in foreign)
    assert len(own) == 3 and own[0] == ".camlit-cache.lock"
    assert own[1].startswith("images-") and own[2].startswith("index-")


def test_runs_with_different_crop_sizes_share_a_cache_folder(flat_tree, tmp_path):
    cache_dir = str(tmp_path / "cache")
    first = make(flat_tree, cache_dir=cache_dir, crop_size=32)
    # The second run's build comes before the first run's loader maps the data file.
    second = make(flat_tree, cache_dir=cache_dir, crop_size=16)
    assert first.cache.data_path != second.cache.data_path
    for datamodule, size in ((first, 32), (second, 16)):
        images, *_ = epoch_batches(datamodule, 0)[0]
        assert images.shape[-1] == size and images.dtype == torch.uint8
    # Once the first run is over, the next build removes its files.
    old = first.cache.data_path
    del first
    gc.collect()
    make(flat_tree, cache_dir=cache_dir, crop_size=16)
    assert not old.exists()
