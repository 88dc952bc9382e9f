import logging
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from camlit.data.quantization import FREQUENCIES

CLASSES = ["HTC-1-M7", "LG-Nexus-5x", "Motorola-X"]
ROOT = Path(__file__).resolve().parents[1]
FIT = str(ROOT / "scripts" / "fit.py")
PREPARE = ROOT / "scripts" / "prepare_data.py"
CONFIGS = ROOT / "scripts" / "configs"
# Scripts that tests start in subprocesses import this checkout's camlit too.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


SCRATCH = {".git", "__pycache__", ".pytest_cache", ".ruff_cache"}


def checkout_paths() -> set[str]:
    """Every file and folder of the checkout (caches left out), empty folders included."""
    found = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in SCRATCH and not name.endswith(".egg-info")]
        found.update(os.path.relpath(os.path.join(folder, name), ROOT) for name in [*subfolders, *files])
    return found


@pytest.fixture(scope="session", autouse=True)
def checkout_unchanged(tmp_path_factory):
    """Tests write only under temporary folders: the session runs in one, and the checkout must be
    as it was after the suite (a Trainer left to its defaults would add lightning_logs/ here)."""
    before = checkout_paths()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(ROOT)
    added, removed = sorted(checkout_paths() - before), sorted(before - checkout_paths())
    assert not added and not removed, f"the tests changed the checkout: added {added[:10]}, removed {removed[:10]}"


def fit_args(root, *extra):
    """scripts/fit.py arguments for a short CPU run of the tiny network on a test tree."""
    return [
        "--data.train_dir", str(root), "--data.classes", str(CLASSES).replace("'", ""),
        "--data.crop_size", "32", "--data.batch_size", "4", "--data.num_workers", "0",
        "--data.synthetic_root", "null", "--model.input_filter", "highpass", "--model.arch", "resnet_tiny",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.log_every_n_steps", "1", *extra,
    ]  # fmt: skip


def save_checkpoint(path, classes=CLASSES, crop_size=32, **model_options):
    """A checkpoint of the tiny network as the CLI writes it: hparams, weights, the DataModule's crop_size."""
    import lightning as L
    import torch

    from camlit.training.module import CameraClassifier

    torch.manual_seed(0)
    model = CameraClassifier(list(classes), arch="resnet_tiny", **model_options)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    if crop_size is not None:
        checkpoint = torch.load(path, weights_only=False)
        checkpoint["datamodule_hyper_parameters"] = {"crop_size": crop_size, "batch_size": 4}
        torch.save(checkpoint, path)
    return path


def write_image(path: Path, image: np.ndarray) -> Path:
    """Write RGB `image` with OpenCV (which wants BGR)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Encoded to bytes: cv2.imwrite crashes (SIGSEGV) on a file name that is not UTF-8.
    ok, data = cv2.imencode(path.suffix or ".png", image[..., ::-1] if image.ndim == 3 else image)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Noise over a coarse pattern: noise is where a misplaced JPEG block or resize tap shows."""
    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    base = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.add(base, rng.integers(0, 40, (height, width, 3), dtype=np.uint8))


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """RGB `image` saved as a JPEG of this quality and decoded, in memory."""
    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


# ITU-T T.81 Annex K's luminance table, which libjpeg (and so OpenCV) scales by the quality.
LUMA = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99],
])  # fmt: skip


def libjpeg_steps(quality: int) -> np.ndarray:
    """The steps of FREQUENCIES in libjpeg's luminance table at `quality`."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = np.clip((LUMA * scale + 50) // 100, 1, 255)
    return np.array([table[u, v] for u, v in FREQUENCIES])


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid PNG of side x side black pixels (1.2 GB decoded at 20000) in about 1.6 MB, written fast:
    after a full flush the compressor starts afresh, so every row after the first compresses to the
    same bytes, and only the checksum is computed over all of them."""
    row = bytes(1 + 3 * side)  # filter byte 0, then the row's RGB bytes
    packer = zlib.compressobj(9)
    first = packer.compress(row) + packer.flush(zlib.Z_FULL_FLUSH)
    again = packer.compress(row) + packer.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(side):
        checksum = zlib.adler32(row, checksum)
    pixels = first + again * (side - 1) + b"\x03\x00" + checksum.to_bytes(4, "big")  # an empty final block

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
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


def same_batch(one, other) -> bool:
    """Whether two training or validation Batches hold the same crops, labels and manipulations."""
    import torch

    fields = ("images", "labels", "manipulation", "manipulated")
    return all(torch.equal(getattr(one, name), getattr(other, name)) for name in fields)


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


def start_prepare_data(
    tmp_path: Path, photos: int, height: int, width: int, stderr: int = subprocess.DEVNULL
) -> tuple[subprocess.Popen, list[str], Path]:
    """scripts/prepare_data.py with 2 workers on `photos` JPEGs of two cameras, in a session of its
    own so that a kill reaches its workers: (the process, its arguments without --workers, output)."""
    rng = np.random.default_rng(2)
    source = tmp_path / "train"
    for k in range(photos):
        write_image(source / f"Cam-{k % 2}" / f"p{k:02}.jpg", photo(rng, height, width))
    out = tmp_path / "out"
    args = ["--input", str(source), "--output", str(out), "--tiles", "4", "--size", "128"]
    process = subprocess.Popen(
        [sys.executable, str(PREPARE), *args, "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    return process, args, out


def mount_tmpfs(folder: Path, options: str) -> None:
    """A real tmpfs at `folder`, which must exist: as root only (skipped otherwise); unmounted by the caller."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder nothing can be written in: a read-only tmpfs as root (whom permissions do not stop),
    else a folder of mode 0o555."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount_tmpfs(folder, "ro,size=64k")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real file system of `size` (a tmpfs, as root; skipped otherwise) at the new `folder`."""
    folder.mkdir()
    mount_tmpfs(folder, f"size={size}")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB file system, for full-disk tests."""
    with small_tmpfs(tmp_path / "small-disk", "256k") as folder:
        yield folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A checkpoint of the tiny network, as save_checkpoint writes it."""
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.ckpt")


@pytest.fixture
def camlit_messages_on_stderr(monkeypatch):
    """main() adds its handler once, bound to the stderr of its time, which capsys replaces per test."""
    monkeypatch.setattr(logging.getLogger("camlit"), "handlers", [])


def full_disk_at(monkeypatch, name: str) -> None:
    """camlit's atomic writes meet a full disk at the temporary of the file called `name`: the
    files written before it are on disk as temporaries, those after it not yet begun."""
    import errno

    import camlit.atomic

    real_open = open

    def full_at(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(f"{name}.tmp{os.getpid()}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(camlit.atomic, "open", full_at, raising=False)


def one_error_line(capsys, call) -> str:
    """Run `call`, which must end with exit status 2 and one `error:` line, no traceback; that line."""
    with pytest.raises(SystemExit) as exit_info:
        call()
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def refused_before_predicting(capsys, main, args: list[str], untouched: tuple[Path, ...] = ()) -> str:
    """main(args) ends with one `error:` line before any image is predicted, and leaves the
    `untouched` files as they were; that line."""
    import camlit.inference.options

    before = {path: path.read_bytes() for path in untouched}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(camlit.inference.options, "predict_paths", lambda *a, **k: pytest.fail("predicted first"))
        line = one_error_line(capsys, lambda: main(args))
    assert {path: path.read_bytes() for path in before} == before
    return line


def dead_pid() -> int:
    """The pid of a process that has ended: a temporary file named after it is a killed writer's."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def wait_for(predicate, timeout: float, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def events(version_dir):
    """A run's TensorBoard events, every scalar and image kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(version_dir), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


PAUSED = """
import sys, time
from pathlib import Path

import {module} as target
from {entry} import main

original = target.{owner}.{method}


def paused(*args, **kwargs):
    Path({marker!r}).touch()
    time.sleep({seconds})
    return original(*args, **kwargs)


setattr(target.{owner}, {method!r}, paused)
main(sys.argv[1:])
"""


def start_paused(
    tmp_path: Path, where: str, entry: str, args: list[str], seconds: float, new_session: bool = False
) -> tuple:
    """`entry`.main(args) in a real process, with `where` (module.Class.method) sleeping `seconds`
    at each call, after touching a marker: (the process, the marker). Signals land in that pause."""
    module, owner, method = where.rsplit(".", 2)
    marker = tmp_path / f"in-{method}"
    code = PAUSED.format(module=module, owner=owner, method=method, entry=entry, marker=str(marker), seconds=seconds)
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=new_session,
    )  # fmt: skip
    return process, marker


def blocked_signals(pid: int) -> set[int]:
    """The signals `pid` holds blocked."""
    return signal_set(pid, "SigBlk")


def caught_signals(pid: int) -> set[int]:
    """The signals `pid` has a handler for."""
    return signal_set(pid, "SigCgt")


def signal_set(pid: int, field: str) -> set[int]:
    """A signal mask of `pid`'s /proc status, as signal numbers."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return set()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field}:")), 16)
    return {number for number in range(1, 64) if mask >> (number - 1) & 1}


def live_members(session: int) -> list[int]:
    """Processes of `session` that have not exited (an unreaped zombie holds nothing)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, _, sid = stat.read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, ValueError):
            continue
        if int(sid) == session and state != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_parent(process: subprocess.Popen, grace: float) -> list[int]:
    """SIGKILL only the parent; return the session's processes still alive `grace` seconds later."""
    assert process.poll() is None, "the run ended before it could be killed"
    assert len(live_members(process.pid)) > 1, "no worker processes to orphan"
    process.send_signal(signal.SIGKILL)
    process.wait()
    wait_for(lambda: not live_members(process.pid), grace)
    return live_members(process.pid)


def end_session(session: int) -> None:
    """Clean-up for the code before the fix, whose orphans would otherwise live on."""
    for pid in live_members(session):
        os.kill(pid, signal.SIGKILL)
