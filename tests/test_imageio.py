"""Reading photos as stored: whatever the bytes, an RGB array or one UnreadableImage naming the file."""

import os
import resource
import signal
import struct
import zlib

import cv2
import numpy as np
import pytest
from conftest import bomb_png, photo, random_image, write_image

from camlit.imageio import UnreadableImage, header_shape, list_images, read_rgb


def test_reader_survives_fuzzing(tmp_path):
    rng = np.random.default_rng(0)
    seeds = [cv2.imencode(ext, random_image(rng, 40, 48))[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".tif")]
    seeds.append(cv2.imencode(".png", rng.integers(0, 65535, (40, 48, 4), dtype=np.uint16))[1].tobytes())
    cases = [rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes() for _ in range(150)]
    for _ in range(250):
        data = bytearray(seeds[int(rng.integers(len(seeds)))])
        for _ in range(int(rng.integers(1, 12))):
            data[int(rng.integers(len(data)))] = int(rng.integers(256))
        truncated = rng.random() < 0.3
        cases.append(bytes(data[: int(rng.integers(len(data) // 2, len(data)))] if truncated else data))
    signal.alarm(120)  # a hang fails the test instead of stalling the suite
    try:
        outcomes = {"image": 0, "refused": 0}
        for index, data in enumerate(cases):
            path = tmp_path / f"case{index}.{('jpg', 'png', 'tif')[index % 3]}"
            path.write_bytes(data)
            try:
                image = read_rgb(path)
            except UnreadableImage as error:
                assert path.name in str(error)
                outcomes["refused"] += 1
            else:
                assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
                outcomes["image"] += 1
    finally:
        signal.alarm(0)
    assert outcomes["refused"] >= 150 and outcomes["image"] > 0


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    image_module.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    rgb = read_rgb(tmp_path / "cmyk.jpg")
    assert rgb.shape == (40, 40, 3)
    assert rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 60


def test_header_shape_of_each_format(tmp_path):
    image = photo(np.random.default_rng(5), 37, 53)
    for suffix in (".jpg", ".png", ".tif", ".bmp"):
        assert header_shape(write_image(tmp_path / f"x{suffix}", image)) == (37, 53), suffix
    (tmp_path / "zero.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x00")  # a segment length of 0
    assert header_shape(tmp_path / "zero.jpg") is None
    assert header_shape(bomb_png(tmp_path / "bomb.png")) == (20000, 20000)


@pytest.mark.parametrize(
    "params", [[], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]],
    ids=["baseline", "progressive", "restarts"],
)  # fmt: skip
def test_a_jpeg_with_data_after_its_end_marker_is_read_and_one_cut_short_is_not(tmp_path, params):
    """Phones append trailers and motion photos a video after the end-of-image marker: such photos
    were refused as truncated, because the marker was looked for in the last 64 bytes only."""
    image = photo(np.random.default_rng(2), 48, 64)
    data = cv2.imencode(".jpg", image[..., ::-1], params)[1].tobytes()
    (tmp_path / "trailer.jpg").write_bytes(data + b"SEFH" + bytes(range(256)) * 4 + b"SEFT")
    assert np.array_equal(read_rgb(tmp_path / "trailer.jpg"), cv2.imdecode(np.frombuffer(data, np.uint8), 1)[..., ::-1])
    for cut in range(len(data) // 4, len(data) - 2, len(data) // 9):
        (tmp_path / "cut.jpg").write_bytes(data[:cut] + bytes(64))  # zero padding, as a failed copy leaves
        with pytest.raises(UnreadableImage, match="cut.jpg: truncated JPEG"):
            read_rgb(tmp_path / "cut.jpg")


def test_a_jpeg_size_behind_fill_bytes_is_read_from_the_header(tmp_path):
    """JPEG allows 0xFF fill bytes before any marker; one before the frame header hid the size, so
    a bomb was decoded (about 900 MB for a 2 MB file) before it was refused."""
    data = cv2.imencode(".jpg", photo(np.random.default_rng(3), 40, 56))[1].tobytes()
    frame = data.index(b"\xff\xc0")
    (tmp_path / "fill.jpg").write_bytes(data[:frame] + b"\xff\xff" + data[frame:])
    assert header_shape(tmp_path / "fill.jpg") == (40, 56)
    assert read_rgb(tmp_path / "fill.jpg").shape == (40, 56, 3)
    size = frame + 2 + 2 + 1  # the frame header's length and precision, then height and width
    claimed = data[:frame] + b"\xff" + data[frame:size] + (20000).to_bytes(2, "big") * 2 + data[size + 4 :]
    (tmp_path / "bomb.jpg").write_bytes(claimed)
    assert header_shape(tmp_path / "bomb.jpg") == (20000, 20000)
    with pytest.raises(UnreadableImage, match=r"bomb.jpg: 20000x20000 is 400,000,000 pixels, over the limit"):
        read_rgb(tmp_path / "bomb.jpg")


def test_a_decompression_bomb_is_refused_before_it_is_decoded(tmp_path):
    bomb = bomb_png(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 2_000_000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    with pytest.raises(UnreadableImage, match=r"bomb.png: 20000x20000 is 400,000,000 pixels, over the limit"):
        read_rgb(bomb)
    # Decoding it would have taken 1.2 GB.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 200_000


def test_max_pixels_is_the_limit(tmp_path):
    path = write_image(tmp_path / "x.png", random_image(np.random.default_rng(0), 40, 50))
    assert read_rgb(path, max_pixels=2000).shape == (40, 50, 3)
    with pytest.raises(UnreadableImage, match="50x40 is 2,000 pixels, over the limit of 1,999"):
        read_rgb(path, max_pixels=1999)


def png_of(path, colour_type: int, channels: int, palette: bytes = b""):
    """A 40x40 8-bit PNG of this IHDR colour type, written by hand (OpenCV writes neither kind)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    rows = np.random.default_rng(0).integers(0, 4, (40, 40 * channels), dtype=np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = (40).to_bytes(4, "big") * 2 + bytes([8, colour_type, 0, 0, 0])
    body = chunk(b"IHDR", header) + (chunk(b"PLTE", palette) if palette else b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_grey_with_alpha_and_palette_pngs_are_refused(tmp_path):
    assert cv2.imread(str(png_of(tmp_path / "grey_alpha.png", 4, 2)), cv2.IMREAD_UNCHANGED).shape == (40, 40, 4)
    with pytest.raises(UnreadableImage, match="grey_alpha.png: grayscale image"):
        read_rgb(tmp_path / "grey_alpha.png")
    palette = bytes(range(12))
    assert cv2.imread(str(png_of(tmp_path / "palette.png", 3, 1, palette)), cv2.IMREAD_UNCHANGED).shape == (40, 40, 3)
    with pytest.raises(UnreadableImage, match="palette.png: palette image"):
        read_rgb(tmp_path / "palette.png")
    assert read_rgb(png_of(tmp_path / "rgb.png", 2, 3)).shape == (40, 40, 3)


def test_a_damaged_tiff_is_reported_without_opencvs_own_error_lines(tmp_path, capfd):
    """OpenCV printed `[ERROR:0@...] TIFF_Error ...` lines above camlit's one `error:` line."""
    ok, data = cv2.imencode(".tif", np.full((64, 64, 3), 99, np.uint8))
    path = tmp_path / "cut.tif"
    path.write_bytes(data.tobytes()[: len(data) // 2])
    with pytest.raises(UnreadableImage):
        read_rgb(path)
    assert "ERROR" not in capfd.readouterr().err


def test_a_file_larger_than_any_image_within_the_limit_is_refused_unread(tmp_path, monkeypatch):
    """A 2 GB sparse file named .jpg was read whole (2.5 GB of memory) before it was found no image."""
    huge = tmp_path / "video.jpg"
    with open(huge, "wb") as file:
        file.truncate(2**31)
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: pytest.fail("read whole"))
    with pytest.raises(UnreadableImage, match=f"{huge}: 2,147,483,648 bytes, more than any image"):
        read_rgb(huge)
    # Within what the limit allows, the same bytes are read (and found no image).
    small = tmp_path / "small.jpg"
    small.write_bytes(b"\x00" * 64)
    monkeypatch.undo()
    with pytest.raises(UnreadableImage, match="not a decodable image"):
        read_rgb(small, max_pixels=1)


@pytest.mark.parametrize("kind", ["fifo", "device", "loop", "folder"])
def test_what_is_no_image_file_is_named_for_what_it_is(tmp_path, kind):
    """A device read as 0 bytes ("empty file"), a pipe waited for a writer, and a link to itself
    was "broken symbolic link to loop.png"; a pipe or a folder with an image's name was left out of
    the listing unsaid, and its row out of a submission."""
    path = tmp_path / "photo.png"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to(path)
    (tmp_path / "notes").mkdir()
    assert list_images(tmp_path) == [path]
    expected = {"loop": "links that lead round in a loop", "folder": "a folder"}.get(
        kind, r"not a regular file \(a device, a pipe or a socket\)"
    )
    with pytest.raises(UnreadableImage, match=f"{path}: {expected}$"):
        read_rgb(path)


def tiff_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    """An uncompressed little-endian RGB TIFF whose first image carries an Orientation tag (274)."""
    height, width, _ = rgb.shape
    pixels = rgb.tobytes()
    # (tag, type, count, value); 258 (bits per sample) and 273 (the strip's offset) point past the IFD.
    entries = [
        (256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, 0), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 0),
        (274, 3, 1, orientation), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(pixels)),
    ]  # fmt: skip
    bits_at = 8 + 2 + 12 * len(entries) + 4
    pointers = {258: bits_at, 273: bits_at + 6}
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = pointers.get(tag, value)
        ifd += (
            struct.pack("<HHIHH", tag, kind, count, value, 0)
            if kind == 3 and count == 1
            else struct.pack("<HHII", tag, kind, count, value)
        )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + struct.pack("<HHH", 8, 8, 8) + pixels


def bigtiff_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    """The same image as a little-endian BigTIFF: 8-byte offsets and counts, 20-byte entries."""
    height, width, _ = rgb.shape
    pixels = rgb.tobytes()
    entries = [
        (256, 3, 1, struct.pack("<H", width)), (257, 3, 1, struct.pack("<H", height)),
        (258, 3, 3, struct.pack("<HHH", 8, 8, 8)), (259, 3, 1, struct.pack("<H", 1)), (262, 3, 1, struct.pack("<H", 2)),
        (273, 16, 1, None), (274, 3, 1, struct.pack("<H", orientation)), (277, 3, 1, struct.pack("<H", 3)),
        (278, 3, 1, struct.pack("<H", height)), (279, 16, 1, struct.pack("<Q", len(pixels))),
    ]  # fmt: skip
    strip_at = 16 + 8 + 20 * len(entries) + 8
    ifd = struct.pack("<Q", len(entries))
    for tag, kind, count, value in entries:
        value = struct.pack("<Q", strip_at) if value is None else value
        ifd += struct.pack("<HHQ", tag, kind, count) + value.ljust(8, b"\x00")
    return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + ifd + struct.pack("<Q", 0) + pixels


@pytest.mark.parametrize("big", [False, True], ids=["tiff", "bigtiff"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiff_is_read_as_stored_whatever_its_orientation_tag(tmp_path, orientation, big):
    """OpenCV's TIFF decoder turns the pixels by the tag whatever the flags: a Kaggle-style .tif
    tagged `rotate 90` came back 90 degrees turned, off the sensor's grid."""
    stored = random_image(np.random.default_rng(orientation), 6, 10)
    path = tmp_path / "photo.tif"
    path.write_bytes((bigtiff_with_orientation if big else tiff_with_orientation)(stored, orientation))
    assert np.array_equal(read_rgb(path), stored)
    assert header_shape(path) == (6, 10)
