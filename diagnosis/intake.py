"""Image intake: untrusted bytes in, a checked RGB image out (or a reason it was refused).

Photos come from strangers on the internet, so every step assumes hostile input: the size is
checked before anything is decoded, the pixel count is read from the header before the pixels
are (decompression bombs), and every decoder error becomes a reason the bot can explain.
Nothing here writes to disk.

Memory: a 40 MP photo that compresses to a few hundred KB took about 300 MB to decode at full
size (Pillow holds RGB at 4 bytes a pixel, and each conversion made a copy); a dozen at once took
the process past 1.8 GB. So a photo is decoded only as large as its user needs (`need_side`):
a JPEG by its own decoder at 1/2, 1/4 or 1/8 scale (cheaper in memory and in time), any other
format reduced right after decoding. What a decode will hold is estimated from the header before
decoding (`decode_bytes`), refused past `max_decode_bytes`, and `DecodeSlots` lets only as many
decodes run at once as the process budget holds.
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageOps, JpegImagePlugin, UnidentifiedImageError

from envconfig import EnvReader

# Formats a phone or a chat app sends. Anything else Pillow could open (TIFF, BMP, ICO...) is
# refused as unsupported rather than decoded by a rarely exercised code path.
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "MPO"})


class RejectReason(StrEnum):
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT = "corrupt"  # truncated or damaged
    FILE_TOO_LARGE = "file_too_large"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_SMALL = "too_small"


class ImageRejected(Exception):
    """The bytes cannot be analysed; `reason` is data the bot turns into a friendly message."""

    def __init__(self, reason: RejectReason, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class IntakeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 64
    # What one decode may hold (estimated before decoding, `decode_bytes`): a 40 MP JPEG or PNG
    # fits, a WebP up to about 10 MP (libwebp holds 16 bytes a pixel), a progressive JPEG up to
    # 28 MP (4:4:4) or 40 MP (4:2:0): it keeps every DCT coefficient, whatever the scale.
    max_decode_bytes: int = 160 * 2**20
    # What all decodes at once may hold: max_decode_bytes each, so 2 at a time by default.
    decode_budget_bytes: int = 320 * 2**20

    def fits(self, size: int | None) -> bool:
        """A file of `size` bytes may be taken: the one size rule for every transport (an
        unknown size passes here and is checked again on the bytes)."""
        return size is None or size <= self.max_bytes

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IntakeLimits:
        """SKINCARE_MAX_PHOTO_BYTES, SKINCARE_MAX_PHOTO_PIXELS, SKINCARE_MIN_PHOTO_SIDE."""
        reader, defaults = EnvReader(env), cls()
        return cls(
            max_bytes=reader.integer(
                "SKINCARE_MAX_PHOTO_BYTES", defaults.max_bytes, 1024, 100 * 2**20
            ),
            max_pixels=reader.integer(
                "SKINCARE_MAX_PHOTO_PIXELS", defaults.max_pixels, 4096, 200_000_000
            ),
            min_side=reader.integer("SKINCARE_MIN_PHOTO_SIDE", defaults.min_side, 1, 4096),
            max_decode_bytes=reader.integer(
                "SKINCARE_MAX_DECODE_MB", defaults.max_decode_bytes // 2**20, 16, 4096
            )
            * 2**20,
            decode_budget_bytes=reader.integer(
                "SKINCARE_DECODE_BUDGET_MB", defaults.decode_budget_bytes // 2**20, 16, 65536
            )
            * 2**20,
        )

    @property
    def decode_slots(self) -> int:
        """How many decodes may run at once within the budget (at least one)."""
        return max(1, self.decode_budget_bytes // self.max_decode_bytes)


class DecodeSlots:
    """At most `limits.decode_slots` photos decoded at once: the rest wait their turn, so the
    memory decodes hold together stays within `decode_budget_bytes`. One per process (the
    assistant's), shared by every transport; the asyncio lock binds to the loop on first use."""

    def __init__(self, limits: IntakeLimits):
        self.count = limits.decode_slots
        self._semaphore = asyncio.Semaphore(self.count)

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._semaphore:
            yield


def open_photo(
    data: bytes, limits: IntakeLimits = IntakeLimits(), need_side: int | None = None
) -> Image.Image:
    """Decode a user's photo into an upright 8-bit RGB image, or raise ImageRejected.

    `need_side`: the shortest side the caller will use. A photo at least twice as large is
    decoded smaller, never below it (None: at full size)."""
    if not limits.fits(len(data)):
        raise ImageRejected(
            RejectReason.FILE_TOO_LARGE,
            f"{len(data) / 1e6:.1f} MB is over the {limits.max_bytes / 1e6:.0f} MB limit",
        )
    if not data:
        raise ImageRejected(RejectReason.NOT_AN_IMAGE, "the file is empty")

    image = _open_header(data, limits)
    width, height = image.size
    if min(width, height) < limits.min_side:
        raise ImageRejected(
            RejectReason.TOO_SMALL,
            f"{width}x{height} px is under {limits.min_side} px on a side",
        )
    try:
        # GIFs and multi-picture files: the first frame is the photo.
        image.seek(0)
        if need_side and image.format in ("JPEG", "MPO"):
            # The decoder picks the smallest of 1/1, 1/2, 1/4, 1/8 scale that covers the size.
            image.draft("RGB", _scaled(width, height, need_side))
        cost = decode_bytes(image, (width, height))
        if cost > limits.max_decode_bytes:
            raise ImageRejected(
                RejectReason.TOO_MANY_PIXELS,
                f"decoding this {width}x{height} {image.format} would take about "
                f"{cost / 2**20:.0f} MB, over the {limits.max_decode_bytes / 2**20:.0f} MB limit",
            )
        image.load()
        image = _reduced(image, need_side)
        image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(RejectReason.CORRUPT, f"the image data is damaged: {exc}") from exc
    return rgb


# Bytes a pixel takes in Pillow's memory, by mode (RGB is stored as 4 bytes, like RGBA).
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_TWO_BYTE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
# Modes Image.reduce cannot take: converted first (P: to RGBA, 1: to L, 16-bit: to I).
_UNREDUCIBLE = {"P": "RGBA", "1": "L", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}
# libwebp decodes into its own RGBA canvas besides Pillow's image (peak RSS, measured:
# bench/memory.py): about 16 bytes a pixel in all.
_WEBP_BYTES_PER_PIXEL = 16


def decode_bytes(image: Image.Image, header_size: tuple[int, int]) -> int:
    """About how much memory decoding `image` (opened, not loaded; drafted if it will be) will
    hold at its peak, from its header alone."""
    width, height = image.size  # the decoded size (a JPEG's draft scale applied)
    pixels = width * height
    if image.format == "WEBP":
        return pixels * _WEBP_BYTES_PER_PIXEL
    per_pixel = 1 if image.mode in _ONE_BYTE_MODES else 2 if image.mode in _TWO_BYTE_MODES else 4
    held = pixels * per_pixel
    if image.mode in _UNREDUCIBLE:
        held += pixels * 4  # the converted copy, before it can be reduced
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        # A progressive JPEG keeps every DCT coefficient (2 bytes) of every component at its
        # full size until the last scan, whatever scale it is decoded at.
        header_pixels = header_size[0] * header_size[1]
        held += int(header_pixels * 2 * _coefficients_per_pixel(image))
    return held


def _coefficients_per_pixel(image: Image.Image) -> float:
    if image.layers != 3:
        return float(image.layers)  # grey: 1; CMYK: 4 (taken at full resolution)
    chroma = {0: 1.0, 1: 0.5, 2: 0.25}.get(JpegImagePlugin.get_sampling(image), 1.0)
    return 1.0 + 2 * chroma  # Y, and Cb and Cr at their subsampled size


def _scaled(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the shorter side is `short_side`, rounded up."""
    shorter = min(width, height)
    return -(-width * short_side // shorter), -(-height * short_side // shorter)


def _reduced(image: Image.Image, need_side: int | None) -> Image.Image:
    """`image` box-reduced by the largest whole factor that keeps its short side at least
    `need_side` (a JPEG drafted already needs little or none)."""
    if not need_side:
        return image
    factor = min(image.size) // need_side
    if factor < 2:
        return image
    source = image.convert(_UNREDUCIBLE[image.mode]) if image.mode in _UNREDUCIBLE else image
    reduced = _box_reduce(source, factor)
    reduced.info = dict(image.info)  # the EXIF orientation, applied next
    return reduced


def _box_reduce(image: Image.Image, factor: int) -> Image.Image:
    """`image.reduce(factor)`, the same pixels, a band of rows at a time: Pillow reduces RGBA
    and LA through a premultiplied copy of the whole image (a 40 MP RGBA PNG: 160 MB more)."""
    if image.mode not in ("RGBA", "LA"):
        return image.reduce(factor)
    band = factor * max(1, 2**20 // (image.width * factor))  # about a megapixel a band
    out = Image.new(image.mode, (-(-image.width // factor), -(-image.height // factor)))
    for top in range(0, image.height, band):
        rows = image.crop((0, top, image.width, min(top + band, image.height)))
        out.paste(rows.reduce(factor), (0, top // factor))
    return out


def _open_header(data: bytes, limits: IntakeLimits) -> Image.Image:
    """Read only the header: format and dimensions, no pixels yet."""
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning is replaced by our stricter limit below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(RejectReason.NOT_AN_IMAGE, "not a picture file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(RejectReason.CORRUPT, f"the image header is damaged: {exc}") from exc

    if image.format not in ACCEPTED_FORMATS:
        raise ImageRejected(
            RejectReason.UNSUPPORTED_FORMAT, f"{image.format} files are not accepted"
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            RejectReason.TOO_MANY_PIXELS,
            f"{width}x{height} is {width * height / 1e6:.0f} megapixels, "
            f"over the {limits.max_pixels / 1e6:.0f} megapixel limit",
        )
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Alpha, palette, CMYK, 16-bit and grayscale images become plain 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grayscale: scale the used range to 0..255 instead of clipping to white.
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        image = Image.fromarray(((pixels - low) * scale).astype(np.uint8), mode="L")
    elif image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")

    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, as a chat app would show them.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
