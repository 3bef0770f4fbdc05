"""Image folders and archives built to hurt: every one refused by name, in bounded memory and time.

Links to devices, FIFOs, huge files and members, pixel bombs and odd tar
members are made in tmp_path by each test; readers that could hang or
allocate without bound run in a child process under a memory limit and a
timeout (tests/bounded.py). 16-bit images keep their full range.
"""

from __future__ import annotations

import io
import os
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from minigrad import data
from minigrad.data import imagefolder
from tests.bounded import refusal_of, run_bounded

pytestmark = pytest.mark.backends("numpy")  # host-side code only
Image = pytest.importorskip("PIL.Image")


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _good_folder(root: Path) -> None:
    for cls in ("a", "b"):
        _png(root / cls / "0.png", np.full((2, 3, 3), 9, dtype=np.uint8))


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_a_link_to_dev_zero_named_png_is_refused_at_once(tmp_path):
    _good_folder(tmp_path / "pets")
    (tmp_path / "pets" / "a" / "zero.png").symlink_to("/dev/zero")
    before = _listing(tmp_path)
    message = refusal_of(f"minigrad.data.load_image_folder({str(tmp_path / 'pets')!r})", extra_mb=100, timeout=30)
    assert message.startswith("ValueError: ") and "zero.png: is a character device (a link to /dev/zero)" in message
    assert "only regular files are read" in message
    assert _listing(tmp_path) == before  # nothing of the user's changed


def test_a_fifo_named_png_is_refused_without_blocking(tmp_path):
    _good_folder(tmp_path / "pets")
    os.mkfifo(tmp_path / "pets" / "b" / "pipe.png")
    message = refusal_of(f"minigrad.data.load_image_folder({str(tmp_path / 'pets')!r})", extra_mb=100, timeout=30)
    assert "pipe.png: is a FIFO (named pipe); only regular files are read" in message, message


def test_a_file_swapped_for_a_fifo_after_the_scan_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "late.png")
    code = f"from pathlib import Path; minigrad.data.datasets.read_regular_file(Path({str(tmp_path / 'late.png')!r}), 1000)"
    assert "late.png: is a FIFO (named pipe)" in refusal_of(code, extra_mb=50, timeout=30)


def test_a_broken_link_is_named(tmp_path):
    _good_folder(tmp_path / "pets")
    (tmp_path / "pets" / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ValueError, match=r"gone\.png: cannot read it .*a broken link"):
        data.load_image_folder(tmp_path / "pets")


def test_links_to_regular_images_are_followed(tmp_path):
    _good_folder(tmp_path / "pets")
    _png(tmp_path / "elsewhere.png", np.full((2, 3, 3), 200, dtype=np.uint8))
    (tmp_path / "pets" / "b" / "1.png").symlink_to(tmp_path / "elsewhere.png")
    dataset = data.load_image_folder(tmp_path / "pets")
    np.testing.assert_allclose(dataset.images[-1], 200 / 255.0, rtol=1e-6)


def test_a_huge_file_named_png_is_refused_before_reading(tmp_path):
    _good_folder(tmp_path / "pets")
    with open(tmp_path / "pets" / "a" / "big.png", "wb") as file:
        file.truncate(imagefolder.MAX_IMAGE_BYTES + 1)  # sparse: no disk used
    message = refusal_of(f"minigrad.data.load_image_folder({str(tmp_path / 'pets')!r})", extra_mb=40, timeout=30)
    assert f"big.png: is {imagefolder.MAX_IMAGE_BYTES + 1} bytes, more than the" in message, message


class _Zeros(io.RawIOBase):
    """`size` zero bytes, produced as they are read (a huge member without a huge buffer)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | int | None]]) -> None:
    """A .tar.gz of `members`: (info, bytes) or (info, number of zero bytes) or (info, None) for non-files."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for info, content in members:
            if isinstance(content, int):
                info.size = content
                tar.addfile(info, io.BufferedReader(_Zeros(content)))
            elif isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_huge_tar_member_is_refused_by_name_in_bounded_memory(tmp_path):
    archive = tmp_path / "bomb.tar.gz"
    good = _png_bytes(np.zeros((2, 2, 3), dtype=np.uint8))
    size = imagefolder.MAX_IMAGE_BYTES + (32 << 20)
    _tar_with(archive, [(tarfile.TarInfo("d/a/0.png"), good), (tarfile.TarInfo("d/b/huge.png"), size)])
    assert archive.stat().st_size < 2 << 20
    message = refusal_of(f"minigrad.data.load_image_folder({str(archive)!r})", extra_mb=60, timeout=60)
    assert message.startswith("ValueError: ") and "member 'd/b/huge.png' is" in message, message
    assert "more than the" in message and "MAX_IMAGE_BYTES" in message


def test_links_devices_absolute_and_parent_members_are_never_read_or_written(tmp_path):
    good = _png_bytes(np.full((2, 2, 3), 5, dtype=np.uint8))
    poison = _png_bytes(np.full((2, 2, 3), 250, dtype=np.uint8))
    link = tarfile.TarInfo("d/a/link.png")
    link.type, link.linkname = tarfile.SYMTYPE, "/dev/zero"
    hard = tarfile.TarInfo("d/b/hard.png")
    hard.type, hard.linkname = tarfile.LNKTYPE, "d/a/0.png"
    device = tarfile.TarInfo("d/b/dev.png")
    device.type, device.devmajor, device.devminor = tarfile.CHRTYPE, 1, 5
    fifo = tarfile.TarInfo("d/b/fifo.png")
    fifo.type = tarfile.FIFOTYPE
    archive = tmp_path / "odd.tar.gz"
    members = [
        (tarfile.TarInfo("d/a/0.png"), good),
        (tarfile.TarInfo("d/b/0.png"), good),
        (tarfile.TarInfo("/abs/d/a/1.png"), poison),
        (tarfile.TarInfo("../d/a/2.png"), poison),
        (tarfile.TarInfo("d/../../a/3.png"), poison),
        (link, None),
        (hard, None),
        (device, None),
        (fifo, None),
    ]
    _tar_with(archive, members)
    before = _listing(tmp_path)
    dataset = data.load_image_folder(archive)
    assert len(dataset) == 2 and dataset.class_names == ("a", "b")
    np.testing.assert_allclose(dataset.images, 5 / 255.0, rtol=1e-6)  # no poison pixel was read
    assert _listing(tmp_path) == before  # nothing was extracted anywhere under tmp_path


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels (its data is one empty row)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (10_000, 10_000)])
def test_a_pixel_bomb_is_refused_before_decoding(tmp_path, width, height):
    _good_folder(tmp_path / "pets")
    (tmp_path / "pets" / "a" / "bomb.png").write_bytes(_png_claiming(width, height))
    code = f"""
import warnings
warnings.simplefilter("ignore")  # Pillow warns between its limit and twice its limit; minigrad refuses both
minigrad.data.load_image_folder({str(tmp_path / "pets")!r})
"""
    message = refusal_of(code, extra_mb=100, timeout=60)
    assert message.startswith("ValueError: ") and "bomb.png" in message, message
    assert "decompression bomb" in message.lower() or "pixels allowed" in message, message


def test_the_pixel_cap_is_minigrads_own(tmp_path, monkeypatch):
    _good_folder(tmp_path / "pets")
    monkeypatch.setattr(imagefolder, "MAX_IMAGE_PIXELS", 5)
    with pytest.raises(ValueError, match=r"0\.png: the image is 3x2, more than the 5 pixels allowed"):
        data.load_image_folder(tmp_path / "pets")


def test_a_full_range_16_bit_gradient_loads_to_its_values(tmp_path):
    gradient = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    for cls in ("a", "b"):
        path = tmp_path / "deep" / cls / "g.png"
        path.parent.mkdir(parents=True)
        Image.fromarray(gradient).save(path)
        with Image.open(path) as check:
            assert check.mode.startswith("I")  # really stored as 16 bits
    dataset = data.load_image_folder(tmp_path / "deep")
    expected = gradient.astype(np.float64) / 65535.0
    for channel in range(3):
        np.testing.assert_allclose(dataset.images[0, channel], expected, rtol=0, atol=1e-7)
    assert np.mean(dataset.images == 1.0) < 1e-3  # not clipped: only the one brightest pixel is 1.0


def test_8_and_16_bit_images_in_one_folder_share_one_scale(tmp_path, monkeypatch):
    _png(tmp_path / "mix" / "a" / "0.png", np.array([[[0, 128, 255]]], dtype=np.uint8))
    deep = tmp_path / "mix" / "b" / "0.png"
    deep.parent.mkdir(parents=True)
    Image.fromarray(np.array([[65535]], dtype=np.uint16)).save(deep)
    cache = tmp_path / "cache.npz"
    for _ in range(2):  # decoded, then from the cache
        dataset = data.load_image_folder(tmp_path / "mix", cache=cache)
        np.testing.assert_allclose(dataset.images[0, :, 0, 0], [0.0, 128 / 255, 1.0], rtol=1e-6)
        np.testing.assert_allclose(dataset.images[1], 1.0, rtol=1e-6)
        monkeypatch.setattr(imagefolder, "_decode", lambda *a: pytest.fail("decoded again despite the cache"))


def test_a_forged_cache_is_ignored_without_allocating_what_it_claims(tmp_path):
    from tests.test_checkpoint_hostile import _write_member

    _good_folder(tmp_path / "pets")
    cache = tmp_path / "pets.npz"
    _write_member(cache, "train_images.npy", (1 << 40,), 64)
    code = f"""
dataset = minigrad.data.load_image_folder({str(tmp_path / "pets")!r}, cache={str(cache)!r})
print(len(dataset))
"""
    result = run_bounded(code, extra_mb=100, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "2", result.stderr[-2000:]
    from minigrad.npz import read_npz

    assert read_npz(cache)["all_images"].shape == (2, 3, 2, 3)  # replaced by a good cache after decoding
