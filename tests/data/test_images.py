"""Safe image loading (every bad input names the file and the reason) and CLIP preprocessing."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from prefalign.data.images import (
    CLIP_MEAN,
    CLIP_STD,
    ImageLoadError,
    Preprocess,
    load_image,
    pad_to_square,
    resize_center_crop,
    to_rgb,
)


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width`` x ``height`` (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "file not found"),
        (b"", "empty file (0 bytes)"),
        (b"this is not an image at all", "not a recognised image format"),
        ("bomb", "decompression bomb"),
        ("truncated", "corrupt or truncated"),
    ],
)
def test_bad_files_raise_with_path_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    if content == "bomb":
        path.write_bytes(png_claiming_size(40_000, 40_000))
    elif content == "truncated":
        buf = io.BytesIO()
        Image.fromarray(np.random.RandomState(0).randint(0, 255, (64, 64, 3), np.uint8)).save(buf, "JPEG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert info.value.source == str(path)
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_bomb_limit_is_configurable(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    assert load_image(path).size == (100, 100)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path, max_pixels=9_999)


@pytest.mark.parametrize(
    ("mode", "make", "expected"),
    [
        ("L", lambda: Image.new("L", (2, 2), 100), (100, 100, 100)),
        ("1", lambda: Image.new("1", (2, 2), 1), (255, 255, 255)),
        ("RGBA", lambda: Image.new("RGBA", (2, 2), (10, 20, 30, 0)), (10, 20, 30)),  # alpha dropped, as CLIP
        ("LA", lambda: Image.new("LA", (2, 2), (77, 128)), (77, 77, 77)),
        ("CMYK", lambda: Image.new("CMYK", (2, 2), (0, 255, 255, 0)), (255, 0, 0)),
        ("I;16", lambda: Image.fromarray(np.full((2, 2), 65535, np.uint16)), (255, 255, 255)),
        ("I", lambda: Image.fromarray(np.full((2, 2), 32896, np.int32)), (128, 128, 128)),
        ("F", lambda: Image.fromarray(np.full((2, 2), 0.5, np.float32)), (128, 128, 128)),
    ],
)
def test_every_mode_becomes_rgb(mode, make, expected):
    img = make()
    assert img.mode.startswith(mode[:1])
    rgb = to_rgb(img)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == expected


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 200, 50, 25] + [0] * 762)
    img.info["transparency"] = 0
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    out = load_image(path)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (200, 50, 25)


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert Image.open(path).size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_tensors_and_arrays_load_in_both_layouts():
    hwc = np.random.RandomState(0).randint(0, 255, (8, 6, 3), np.uint8)
    from_hwc = np.asarray(load_image(hwc))
    from_chw = np.asarray(load_image(torch.from_numpy(hwc).permute(2, 0, 1)))
    from_float = np.asarray(load_image(torch.from_numpy(hwc).permute(2, 0, 1).float() / 255))
    assert (from_hwc == hwc).all() and (from_chw == hwc).all() and (from_float == hwc).all()
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(np.zeros((2, 3, 4, 5)))


def test_pad_keeps_aspect_and_centres_on_black():
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    out = pad_to_square(img, 32)  # scale 0.8 -> 32x16, 8 rows of black above and below
    arr = np.asarray(out)
    assert out.size == (32, 32)
    assert (arr[:8] == 0).all() and (arr[24:] == 0).all()
    assert (arr[8:24] == 255).all()


def test_pad_also_squares_an_image_that_needs_no_resize():
    out = pad_to_square(Image.new("RGB", (32, 10), (255, 255, 255)), 32)
    arr = np.asarray(out)
    assert out.size == (32, 32) and (arr[11:21] == 255).all() and (arr[:11] == 0).all()


def test_center_crop_follows_torchvision_arithmetic():
    # 40x20 -> shortest edge 32, longest int(32 * 40 / 20) = 64 -> crop columns 16..48
    img = Image.new("RGB", (40, 20))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # a red quarter on the left is cropped away
    out = resize_center_crop(img, 32)
    assert out.size == (32, 32)
    assert np.asarray(out)[:, :, 0].max() < 255


def test_preprocess_normalises_with_clip_constants():
    pre = Preprocess(mode="center-crop", size=4)
    t = pre(Image.new("RGB", (4, 4), (255, 0, 128)))
    assert t.shape == (3, 4, 4) and t.dtype == torch.float32
    expected = [
        (1 - CLIP_MEAN[0]) / CLIP_STD[0],
        (0 - CLIP_MEAN[1]) / CLIP_STD[1],
        (128 / 255 - CLIP_MEAN[2]) / CLIP_STD[2],
    ]
    torch.testing.assert_close(t[:, 0, 0], torch.tensor(expected), rtol=1e-6, atol=1e-6)


def test_preprocess_round_trips_through_dict():
    pre = Preprocess(mode="pad", size=336, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert Preprocess.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError, match="unknown preprocessing mode"):
        Preprocess(mode="stretch")
