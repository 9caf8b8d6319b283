import asyncio
import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from diagnosis.intake import DecodeSlots, ImageRejected, IntakeLimits, RejectReason, open_photo
from envconfig import SettingsError

from helpers import REPO_ROOT, image_bytes


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


# ---- the memory budget: decoding only as large as needed ------------------------------------

# Makes a large, smooth (so well compressed) photo file in a process of its own, so that the
# test process never holds its pixels: python -c MAKE_PHOTO PATH FORMAT WIDTH HEIGHT [MODE].
MAKE_PHOTO = """
import sys
from PIL import Image
path, fmt, width, height = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mode = sys.argv[5] if len(sys.argv) > 5 else "RGB"
ramp = Image.linear_gradient("L").resize((width, height))
bands = [ramp, ramp.transpose(Image.Transpose.ROTATE_180), Image.new("L", (width, height), 90)]
image = Image.merge("RGB", bands)
if mode == "RGBA":
    image.putalpha(ramp)
image.save(path, fmt, **({"quality": 85} if fmt == "JPEG" else {"compress_level": 1}))
"""

# Decodes a file with intake in a fresh process: prints the peak RSS growth (MB), the estimate
# (MB) and the decoded size. tracemalloc would not see Pillow's pixel buffers (C allocations).
MEASURE_DECODE = """
import io, sys
from PIL import Image
from diagnosis.intake import IntakeLimits, decode_bytes, open_photo

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

data = open(sys.argv[1], "rb").read()
need = int(sys.argv[2])
header = Image.open(io.BytesIO(data))
size = header.size
if header.format == "JPEG":
    header.draft("RGB", (size[0] * need // min(size), size[1] * need // min(size)))
estimate = decode_bytes(header, size) / 2**20
del header
before = peak_mb()
image = open_photo(data, IntakeLimits(), need_side=need)
print(peak_mb() - before, estimate, *image.size)
"""


def run_python(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", *args], capture_output=True, text=True, cwd=REPO_ROOT, check=True
    )
    return result.stdout


@pytest.mark.parametrize(
    ("fmt", "width", "height", "mode", "full_size_mb"),
    [
        # A 40 MP JPEG: about 300 MB decoded at full size before; its decoder now scales it.
        ("JPEG", 7296, 5472, "RGB", 300),
        # A 24 MP RGBA PNG cannot be scaled by its decoder: it is held once (4 bytes a pixel)
        # and reduced; before, each conversion copied it (about 460 MB).
        ("PNG", 6000, 4000, "RGBA", 460),
    ],
)
def test_a_pixel_heavy_photo_is_decoded_within_its_estimate(
    tmp_path, fmt, width, height, mode, full_size_mb
):
    path = tmp_path / f"photo.{fmt.lower()}"
    run_python(MAKE_PHOTO, str(path), fmt, str(width), str(height), mode)
    assert path.stat().st_size < IntakeLimits().max_bytes  # an allowed file
    grew, estimate, decoded_w, decoded_h = (
        float(v) for v in run_python(MEASURE_DECODE, str(path), "256").split()
    )
    assert estimate <= IntakeLimits().max_decode_bytes / 2**20
    # The estimate holds (a little slack for the decoder's own buffers), far under full size.
    assert grew <= estimate * 1.1 + 8, (grew, estimate)
    assert grew < full_size_mb / 4
    # Decoded no smaller than needed, and not twice as large.
    assert 256 <= min(decoded_w, decoded_h) < 512
    assert decoded_w / decoded_h == pytest.approx(width / height, rel=0.01)


def test_reduced_photos_keep_their_orientation_and_look():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    photo = gradient(1200, 800)
    for fmt in ("PNG", "JPEG"):
        image = open_photo(image_bytes(photo, fmt, exif=exif), need_side=256)
        width, height = image.size  # upright: portrait, 2:3, at least 256 px across
        assert 256 <= width < 512 and height / width == pytest.approx(1.5, rel=0.01)
        full = open_photo(image_bytes(photo, fmt, exif=exif))
        assert full.size == (800, 1200)
        same_size = np.asarray(full.resize(image.size, Image.Resampling.BOX), dtype=float)
        assert np.abs(np.asarray(image, dtype=float) - same_size).mean() < 3
    # Palette, 16-bit and transparent images, which Pillow cannot reduce as they are.
    palette = image_bytes(gradient(1024, 768).quantize(32), "PNG")
    assert open_photo(palette, need_side=256).size == (342, 256)
    deep = Image.fromarray(np.tile(np.arange(1024, dtype=np.uint16) * 60, (768, 1)))
    assert open_photo(image_bytes(deep, "PNG"), need_side=256).size == (342, 256)
    clear = gradient(1024, 768).convert("RGBA")
    clear.putalpha(0)
    see_through = open_photo(image_bytes(clear, "PNG"), need_side=256)
    assert see_through.size == (342, 256) and see_through.getpixel((5, 5)) == (255, 255, 255)


def test_a_photo_too_costly_to_decode_is_refused_before_decoding():
    # WebP: libwebp holds about 16 bytes a pixel. 2000 x 1500 = 3 MP: about 46 MB.
    webp = image_bytes(gradient(2000, 1500), "WEBP")
    with pytest.raises(ImageRejected) as caught:
        open_photo(webp, IntakeLimits(max_decode_bytes=32 * 2**20))
    assert caught.value.reason == RejectReason.TOO_MANY_PIXELS
    assert "would take about 46 MB, over the 32 MB limit" in caught.value.detail
    # A progressive JPEG keeps all its coefficients whatever the scale: counted.
    progressive = image_bytes(gradient(4000, 3000), "JPEG", progressive=True, subsampling=0)
    with pytest.raises(ImageRejected):
        open_photo(progressive, IntakeLimits(max_decode_bytes=32 * 2**20), need_side=256)
    baseline = image_bytes(gradient(4000, 3000), "JPEG", subsampling=0)
    assert min(open_photo(baseline, IntakeLimits(max_decode_bytes=32 * 2**20), 256).size) >= 256


async def test_decode_slots_let_only_the_budgeted_number_decode_at_once():
    limits = IntakeLimits(max_decode_bytes=100 * 2**20, decode_budget_bytes=250 * 2**20)
    slots = DecodeSlots(limits)
    assert slots.count == 2 and DecodeSlots(IntakeLimits()).count == 2
    inside, most = 0, 0

    async def decode() -> None:
        nonlocal inside, most
        async with slots.held():
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(decode() for _ in range(6)))
    assert most == 2


def test_decode_budget_settings():
    limits = IntakeLimits.from_env(
        {"SKINCARE_MAX_DECODE_MB": "64", "SKINCARE_DECODE_BUDGET_MB": "512"}
    )
    assert limits.max_decode_bytes == 64 * 2**20 and limits.decode_slots == 8
    with pytest.raises(SettingsError, match="SKINCARE_MAX_DECODE_MB"):
        IntakeLimits.from_env({"SKINCARE_MAX_DECODE_MB": "lots"})
