"""Image intake: untrusted bytes in, a checked RGB image out (or a reason it was refused).

Photos come from strangers on the internet, so every step assumes hostile input: the size is
checked before anything is decoded, the pixel count is read from the header before the pixels
are (decompression bombs), and every decoder error becomes a reason the bot can explain.
Nothing here writes to disk.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
        )


def open_photo(data: bytes, limits: IntakeLimits = IntakeLimits()) -> Image.Image:
    """Decode a user's photo into an upright 8-bit RGB image, or raise ImageRejected."""
    if not limits.fits(len(data)):
        raise ImageRejected(
            RejectReason.FILE_TOO_LARGE,
            f"{len(data) / 1e6:.1f} MB is over the {limits.max_bytes / 1e6:.0f} MB limit",
        )
    if not data:
        raise ImageRejected(RejectReason.NOT_AN_IMAGE, "the file is empty")

    image = _open_header(data, limits)
    try:
        # GIFs and multi-picture files: the first frame is the photo.
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(RejectReason.TOO_MANY_PIXELS, str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(RejectReason.CORRUPT, f"the image data is damaged: {exc}") from exc

    if min(rgb.size) < limits.min_side:
        raise ImageRejected(
            RejectReason.TOO_SMALL,
            f"{rgb.width}x{rgb.height} px is under {limits.min_side} px on a side",
        )
    return rgb


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
