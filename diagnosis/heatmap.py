"""Heatmaps shown to people: scaling a class-activation map to [0, 1] and drawing it on the photo.

Torch-free, so that both back-ends (serving/torch_gradcam.py for torch, serving/onnx_backend.py)
share it and the bot serving the ONNX model never imports torch.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# A spread this small next to the peak is float noise, not location; stretching it to [0, 1]
# would invent a hot spot. Relative, because CAM magnitudes vary by orders between models.
_FLAT = 1e-5


def stretch_to_unit(cam: np.ndarray) -> np.ndarray:
    """`cam` scaled to [0, 1] (float32); all zeros when it is flat or not finite."""
    cam = np.asarray(cam, dtype=np.float32)
    low, high = float(cam.min()), float(cam.max())
    spread = high - low
    if not np.isfinite(spread) or spread <= _FLAT * high:
        return np.zeros(cam.shape, dtype=np.float32)
    return np.clip((cam - low) / spread, 0.0, 1.0).astype(np.float32, copy=False)


def _jet(values: np.ndarray) -> np.ndarray:
    """Jet colormap: [0, 1] -> RGB floats in [0, 1], dark blue through green to dark red."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25], dtype=np.float32)  # where R, G and B peak
    return np.clip(1.5 - np.abs(4.0 * (v - centres)), 0.0, 1.0)


def overlay_png(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.45) -> bytes:
    """The heatmap, coloured, blended over `image` at its size; PNG bytes."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within [0, 1], got {alpha}")
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heat.shape}")
    heat = np.nan_to_num(heat, nan=0.0, posinf=1.0, neginf=0.0)
    photo = image.convert("RGB")
    resized = Image.fromarray(heat).resize(photo.size, Image.Resampling.BILINEAR)
    colours = _jet(np.asarray(resized, dtype=np.float32))
    pixels = np.asarray(photo, dtype=np.float32) / 255.0
    blended = (1.0 - alpha) * pixels + alpha * colours
    out = Image.fromarray(np.round(blended * 255.0).clip(0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue()
