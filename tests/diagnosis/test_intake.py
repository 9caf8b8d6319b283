import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from diagnosis.intake import ImageRejected, IntakeLimits, RejectReason, open_photo

from helpers import image_bytes


def reason_for(data: bytes, limits: IntakeLimits = IntakeLimits()) -> RejectReason:
    with pytest.raises(ImageRejected) as caught:
        open_photo(data, limits)
    return caught.value.reason


def gradient(width=120, height=80) -> Image.Image:
    xs = np.linspace(0, 255, width, dtype=np.uint8)
    pixels = np.stack([np.tile(xs, (height, 1))] * 3, axis=-1)
    pixels[..., 1] = 90
    return Image.fromarray(pixels, "RGB")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions but carries almost no data: a decompression bomb."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def test_real_photos_open_as_rgb(real_photo_paths):
    for path in real_photo_paths:
        image = open_photo(path.read_bytes())
        assert image.mode == "RGB"
        assert min(image.size) >= 64


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_common_formats(fmt):
    image = open_photo(image_bytes(gradient(), fmt))
    assert image.size == (120, 80) and image.mode == "RGB"


def test_gif_first_frame_is_used():
    frames = [Image.new("RGB", (100, 100), color) for color in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    image = open_photo(buffer.getvalue())
    red, green, blue = image.getpixel((50, 50))
    assert red > 200 and blue < 50


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a portrait phone photo stored sideways
    data = image_bytes(gradient(120, 80), "JPEG", exif=exif)
    assert open_photo(data).size == (80, 120)


def test_transparency_becomes_white():
    rgba = Image.new("RGBA", (80, 80), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 40, 80))
    image = open_photo(image_bytes(rgba))
    assert image.getpixel((70, 40)) == (255, 255, 255)
    assert image.getpixel((10, 40)) == (0, 0, 255)


def test_palette_cmyk_grayscale_and_16_bit_become_rgb():
    palette = gradient().convert("P")
    cmyk = gradient().convert("CMYK")
    gray = gradient().convert("L")
    sixteen = Image.fromarray((np.arange(100 * 100).reshape(100, 100) * 6).astype(np.uint16))
    assert sixteen.mode.startswith("I;16")
    for data in (
        image_bytes(palette),
        image_bytes(cmyk, "JPEG"),
        image_bytes(gray),
        image_bytes(sixteen),
    ):
        assert open_photo(data).mode == "RGB"
    # 16-bit data is rescaled, not clipped to white.
    converted = np.asarray(open_photo(image_bytes(sixteen)))
    assert converted.min() == 0 and converted.max() == 255 and converted.mean() < 200


def test_not_an_image():
    assert reason_for(b"hello, this is a text file\n" * 20) == RejectReason.NOT_AN_IMAGE
    assert reason_for(b"") == RejectReason.NOT_AN_IMAGE
    assert reason_for(b"%PDF-1.7\n" + b"0" * 2000) == RejectReason.NOT_AN_IMAGE


def test_truncated_photo_is_corrupt(real_photo_paths):
    data = real_photo_paths[0].read_bytes()
    assert reason_for(data[: len(data) // 2]) == RejectReason.CORRUPT
    png = image_bytes(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    )
    assert reason_for(png[: len(png) // 2]) == RejectReason.CORRUPT


def test_file_over_20_mb_is_refused_before_decoding():
    data = image_bytes(gradient(), "PNG") + b"\0" * (20 * 1024 * 1024)
    assert reason_for(data) == RejectReason.FILE_TOO_LARGE


def test_decompression_bombs_are_refused_without_decoding():
    # These PNGs carry no pixel data: decoding them would fail as CORRUPT, so TOO_MANY_PIXELS
    # also proves the limit was applied to the header, before any decoding.
    # 8000 x 6000 = 48 MP: over our 40 MP limit although Pillow itself would decode it.
    assert reason_for(png_header_only(8000, 6000)) == RejectReason.TOO_MANY_PIXELS
    # 50000 x 50000: Pillow's own bomb error is reported with the same reason.
    assert reason_for(png_header_only(50000, 50000)) == RejectReason.TOO_MANY_PIXELS
    # A real, decodable image over a lowered limit.
    limits = IntakeLimits(max_pixels=10_000)
    assert reason_for(image_bytes(gradient(200, 200)), limits) == RejectReason.TOO_MANY_PIXELS


def test_tiny_images_are_refused():
    assert reason_for(image_bytes(gradient(63, 200))) == RejectReason.TOO_SMALL
    assert open_photo(image_bytes(gradient(64, 64))).size == (64, 64)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO"])
def test_odd_formats_are_refused_as_unsupported(fmt):
    assert reason_for(image_bytes(gradient(), fmt)) == RejectReason.UNSUPPORTED_FORMAT


def test_reasons_are_distinct():
    # Two reasons with one value would silently become aliases; __members__ still lists both.
    assert len(RejectReason.__members__) == len(RejectReason)


def test_the_size_rule_is_at_most_max_bytes():
    limits = IntakeLimits(max_bytes=1000)
    assert limits.fits(1000) and limits.fits(0) and limits.fits(None)
    assert not limits.fits(1001)
