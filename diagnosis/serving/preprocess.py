"""A photo as the model wants it, from the model card (size, crop, interpolation, mean/std).

In numpy and Pillow, so that every back-end (and training's evaluation) sees the same pixels.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from diagnosis.bundle import ModelCard

_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


def resize_side(card: ModelCard) -> int:
    """The short side a photo is resized to before the centre crop (224 / 0.875: 256 px): a
    photo decoded smaller than this would be upscaled, one decoded larger only resized down."""
    _, height, width = card.input_size
    return math.ceil(max(height, width) / card.crop_pct)


def preprocess_array(image: Image.Image, card: ModelCard) -> np.ndarray:
    """Resize the short side, centre-crop to the card's input size, normalise: CHW float32."""
    _, height, width = card.input_size
    interpolation = _INTERPOLATIONS.get(card.interpolation, Image.Resampling.BICUBIC)
    scale_to = max(height, width) / card.crop_pct
    ratio = scale_to / min(image.size)
    resized = image.resize(
        (max(width, round(image.width * ratio)), max(height, round(image.height * ratio))),
        interpolation,
    )
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    cropped = resized.crop((left, top, left + width, top + height))
    pixels = np.asarray(cropped, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(card.mean, dtype=np.float32)) / np.asarray(
        card.std, dtype=np.float32
    )
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def center_crop_like(image: Image.Image, card: ModelCard) -> Image.Image:
    """The part of the photo the model saw, at a size that is pleasant to look at."""
    _, height, width = card.input_size
    side = min(image.size) * card.crop_pct
    aspect = width / height
    crop_w, crop_h = (side * aspect, side) if aspect <= 1 else (side, side / aspect)
    left = (image.width - crop_w) / 2
    top = (image.height - crop_h) / 2
    return image.crop((round(left), round(top), round(left + crop_w), round(top + crop_h)))
