from pathlib import Path

import cv2
import numpy as np
import pytest

CLASSES = ["HTC-1-M7", "LG-Nexus-5x", "Motorola-X"]


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write RGB `image` with OpenCV (which wants BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image[..., ::-1] if image.ndim == 3 else image)
    return path


def random_image(rng: np.random.Generator, height: int = 64, width: int = 80) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def add_unusable_files(folder: Path) -> None:
    """A zero-byte file, text named .jpg, an image smaller than a 32 px crop, and a grayscale one."""
    rng = np.random.default_rng(0)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    write_image(folder / "tiny.png", random_image(rng, 20, 20))
    write_image(folder / "gray.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))


def make_datamodule(root, **kwargs):
    """A CameraDataModule on a test tree, prepared and set up, with tiny crops and no workers."""
    from camlit.data.datamodule import CameraDataModule

    options = dict(classes=CLASSES, crop_size=32, batch_size=4, num_workers=0, synthetic_root=None)
    options.update(kwargs)
    datamodule = CameraDataModule(str(root), **options)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def epoch_batches(datamodule, epoch):
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


@pytest.fixture
def flat_tree(tmp_path) -> Path:
    """root/<camera>/p<k>.png: 3 classes x 6 photos of 64x80."""
    rng = np.random.default_rng(0)
    root = tmp_path / "flat"
    for camera in CLASSES:
        for k in range(6):
            write_image(root / camera / f"{camera}-p{k}.png", random_image(rng))
    return root


@pytest.fixture
def manipulation_tree(tmp_path) -> Path:
    """root/<manipulation>/<camera>/<stem>.png: the same 4 photos per class in 3 manipulation folders."""
    rng = np.random.default_rng(1)
    root = tmp_path / "data-512"
    for manipulation in ("unaltered", "jpeg70", "gamma0.8"):
        for camera in CLASSES:
            for k in range(4):
                write_image(root / manipulation / camera / f"{camera}-p{k}.png", random_image(rng))
    return root
