"""Photo-quality check that runs before the classifier.

The reference study found that the model misread blurry, badly lit and far-away photos, so these
are caught first and the user is asked for a better photo instead of being given a confident
wrong answer. The verdict is data (issue codes and measures); the bot renders the tips from
templates, so no user-facing text lives here.

Every measure is taken on a copy scaled to a fixed working size, so a 180 px dermoscopic crop and
a 12 MP phone photo are judged on the same scale, and detail far finer than the classifier's input
resolution neither rescues a blurred photo nor is demanded of a small one.

Default thresholds were calibrated on all 5,262 photos of the skin-photos dataset (3,606 DermNet
clinical, 1,656 ISIC dermoscopic) and on degraded copies of each photo, every copy re-encoded as
JPEG q87 like the dataset; blur radii and shrink factors are relative to a 448 px wide photo.
`.venv/bin/python bench/quality_calibration.py` prints (DermNet / ISIC / all):

    real photos flagged          dermnet   isic    all
      blurry                       0.1%    1.9%    0.7%
      too_dark                     0.1%    0.0%    0.1%
      too_bright                   0.3%    0.1%    0.3%
      subject_too_small            0.5%    0.8%    0.6%
      any reason                   1.1%    2.8%    1.6%   (86 of 5,262)
      any, watermark cropped off   2.4%      -       -    (blurry 1.5%: the lettering is sharp)

    degraded copies caught (the expected reason)
      blur r=3 / r=5              99.5%   92.5%   97.3%  /  99.5%  97.4%  98.8%
      blur r=2 (milder)           81.8%   45.5%   70.3%
      dark x0.25 / x0.2            100%    100%    100%  (x0.35: 88.9% all)
      bright x2.5 / x3            93.6%   99.8%   95.6%  /  97.8%  99.9%  98.5%
      bright x2 (milder)          77.8%   99.2%   84.5%
      far 25% on neutral bg       99.9%    100%   99.9%
      far 35% (12% of the frame)  34.8%   16.0%   28.9%
      far 25% on a beige wall        0%      0%      0%   (known limit: beige is skin-coloured)

The 32 real photos flagged subject_too_small are not dark skin: the ones among the darkest photos
(7 of the 133 with mean brightness under 0.3) are hair-covered scalps, Wood's-lamp (UV) and X-ray
images; the others are mostly dermoscopic photos with a strong blue cast and small naevi on a pale
background. Bright copies that pass are mostly of dark originals (median brightness 0.33, against
0.55 for all photos) that the factor brings near a normal exposure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from PIL import Image

from envconfig import EnvReader

# Longest side of the copy every measure is taken on. 160 px keeps the 180 px dermoscopic photos
# (nearly) at their own resolution, which is what separates them from blurred copies; at 256 px
# their upscaling softens them into the blurred range. It also keeps the check cheap: about 1 ms
# for a 448 x 336 photo, about 13 ms for 12 MP (nearly all of it the resize).
WORKING_SIDE = 160

# ITU-R BT.601 weights, the ones JPEG itself uses for Y, Cb and Cr.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_CR = np.array([0.5, -0.418688, -0.081312], dtype=np.float32)
_CB = np.array([-0.168736, -0.331264, 0.5], dtype=np.float32)

# Least redness (Cr, 0-255 scale, 0 = grey) for a pixel to count as skin; it must also be at least
# as red as it is blue. Skin of every tone and the pink/brown dermoscopic field sit on the red side
# of the Cb/Cr plane; grey walls, white tables and paper sit near grey. A hue rule rather than the
# classic YCrCb box (Cr 133-173, Cb 77-127): on a 10% sample of the dataset the box left 5% of the
# dermoscopic photos under 10% skin, this rule under 1%.
_SKIN_MIN_CR = 5.0

# A photo whose most colourful pixels (99th percentile of chroma, 0-1) are this close to grey is
# black and white: skin cannot be told from background by colour, so the subject check is skipped
# rather than blaming distance.
_MONOCHROME_MAX_CHROMA = 4.0 / 255.0

# Luma at or above which a pixel counts as blown out (no detail left to see).
_CLIPPED_LUMA = 250.0


class QualityIssue(StrEnum):
    BLURRY = "blurry"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    SUBJECT_TOO_SMALL = "subject_too_small"


@dataclass(frozen=True)
class QualityThresholds:
    # Laplacian energy over gradient energy at the working size. Contrast cancels out, so a dim or
    # low-contrast photo is not mistaken for a blurred one; blur removes the finest detail (the
    # Laplacian) faster than edges (the gradient), and the ratio sees that.
    min_sharpness: float = 1.4
    # Mean luma, 0-1. A backstop for a dark photo with one small bright spot in it (a lamp, a
    # flash reflection) that would pass the highlights rule below.
    min_brightness: float = 0.15
    # Mean luma, 0-1. A backstop for a washed-out photo that is not quite clipped; a white table
    # around a far-away subject stays under it.
    max_brightness: float = 0.93
    # Share of the frame that is warm-coloured like skin. A photo taken from afar on a wall or a
    # table leaves little of it; close-ups of every skin tone and dermoscopic photos keep far more.
    min_subject_fraction: float = 0.1
    # Added: 95th-percentile luma, 0-1. A dark photo is dark even in its brightest parts. The mean
    # cannot tell a darkened photo from a well-exposed one of dark skin or with a black
    # dermatoscope rim; the highlights can.
    min_highlights: float = 0.3
    # Added: share of blown-out pixels. Overexposing a photo with a dark background wipes out the
    # skin without raising the mean much.
    max_clipped: float = 0.15

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QualityThresholds:
        """SKINCARE_QUALITY_<FIELD> for each field, e.g. SKINCARE_QUALITY_MIN_SHARPNESS."""
        reader, defaults = EnvReader(env), cls()
        return cls(
            **{
                name: reader.number(f"SKINCARE_QUALITY_{name.upper()}", getattr(defaults, name))
                for name in cls.__dataclass_fields__
            }
        )


@dataclass(frozen=True)
class QualityReport:
    ok: bool
    reasons: tuple[QualityIssue, ...]
    measures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "reasons": [str(reason) for reason in self.reasons],
            "measures": dict(self.measures),
        }


def check_quality(
    image: Image.Image, thresholds: QualityThresholds = QualityThresholds()
) -> QualityReport:
    """Judge whether a decoded photo is good enough to classify."""
    measures = measure(image)
    reasons = assess(measures, thresholds)
    return QualityReport(ok=not reasons, reasons=reasons, measures=measures)


def assess(
    measures: dict[str, float], thresholds: QualityThresholds = QualityThresholds()
) -> tuple[QualityIssue, ...]:
    """The issues that `measures` (from `measure`) show under `thresholds`.

    Separate from the measuring so that the calibration bench can try thresholds on stored
    measures instead of re-reading thousands of photos.
    """
    reasons: list[QualityIssue] = []
    too_dark = (
        measures["brightness"] < thresholds.min_brightness
        or measures["highlights"] < thresholds.min_highlights
    )
    too_bright = (
        measures["brightness"] > thresholds.max_brightness
        or measures["clipped"] > thresholds.max_clipped
    )
    if too_dark:
        reasons.append(QualityIssue.TOO_DARK)
    if too_bright:
        reasons.append(QualityIssue.TOO_BRIGHT)
    # A badly exposed photo is reported for its exposure alone: its colours are washed out or
    # buried in the dark, so the skin measure means little, and the retake fixes everything.
    if too_dark or too_bright:
        return tuple(reasons)
    if measures["sharpness"] < thresholds.min_sharpness:
        reasons.append(QualityIssue.BLURRY)
    if (
        measures["colourfulness"] > _MONOCHROME_MAX_CHROMA
        and measures["subject_fraction"] < thresholds.min_subject_fraction
    ):
        reasons.append(QualityIssue.SUBJECT_TOO_SMALL)
    return tuple(reasons)


def _working_copy(image: Image.Image) -> np.ndarray:
    if image.mode != "RGB":
        image = image.convert("RGB")
    width, height = image.size
    scale = WORKING_SIDE / max(width, height)
    size = (max(3, round(width * scale)), max(3, round(height * scale)))
    # reducing_gap lets Pillow box-reduce a 12 MP photo first (13 ms instead of 55); the result
    # differs from a full resample far less than the thresholds' margins.
    small = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(small, dtype=np.float32)


def measure(image: Image.Image) -> dict[str, float]:
    """The quality measures of a photo, taken on its working-size copy."""
    rgb = _working_copy(image)
    luma = rgb @ _LUMA
    cr = rgb @ _CR
    cb = rgb @ _CB

    high = np.percentile(luma, 95.0)
    chroma = np.hypot(cr, cb)
    warm = (cr >= _SKIN_MIN_CR) & (cr >= cb)

    return {
        "sharpness": _sharpness(luma),
        "brightness": float(luma.mean()) / 255.0,
        "highlights": float(high) / 255.0,
        "clipped": float((luma >= _CLIPPED_LUMA).mean()),
        "subject_fraction": float(warm.mean()),
        "colourfulness": float(np.percentile(chroma, 99.0)) / 255.0,
    }


def _sharpness(luma: np.ndarray) -> float:
    centre = luma[1:-1, 1:-1]
    laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * centre
    grad_x = (luma[1:-1, 2:] - luma[1:-1, :-2]) * 0.5
    grad_y = (luma[2:, 1:-1] - luma[:-2, 1:-1]) * 0.5
    gradient_energy = float(np.mean(grad_x * grad_x + grad_y * grad_y))
    # A featureless frame (a uniform colour, a lens cap) has no detail to classify: call it 0
    # rather than dividing rounding noise by rounding noise.
    if gradient_energy < 1e-3:
        return 0.0
    return float(np.mean(laplacian * laplacian)) / gradient_energy
