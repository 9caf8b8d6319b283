"""One photo, start to finish: intake, quality check, prediction. Shared by the CLI and the bot."""

from __future__ import annotations

import asyncio
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from PIL import Image

from diagnosis.bundle import ModelCard
from diagnosis.intake import DecodeSlots, ImageRejected, IntakeLimits, open_photo
from diagnosis.quality import QualityReport, QualityThresholds, check_quality
from diagnosis.serving.batcher import Predictor
from diagnosis.serving.postprocess import Prediction
from diagnosis.serving.preprocess import resize_side


@dataclass(frozen=True)
class PhotoAnalysis:
    image: Image.Image | None = None
    rejected: ImageRejected | None = None
    quality: QualityReport | None = None
    prediction: Prediction | None = None

    @property
    def refused(self) -> bool:
        return self.rejected is not None

    def to_dict(self) -> dict[str, Any]:
        if self.rejected is not None:
            return {"error": str(self.rejected.reason), "detail": self.rejected.detail}
        result: dict[str, Any] = {"quality": self.quality.to_dict() if self.quality else None}
        if self.prediction is not None:
            result.update(self.prediction.to_dict())
        return result


# The heatmap is drawn on the part of the photo the model saw: decoded at least this large, so
# that it stays pleasant to look at (the model itself needs only `resize_side`, 256 px).
HEATMAP_SIDE = 512


def decode_side(card: ModelCard) -> int:
    """The short side a photo is decoded at (at least) for its analysis: the model's."""
    return resize_side(card)


def check_photo(
    data: bytes, limits: IntakeLimits, thresholds: QualityThresholds, need_side: int | None = None
) -> tuple[Image.Image, QualityReport]:
    """Decode and judge a photo (CPU work: call it off the event loop). Raises ImageRejected.

    `need_side`: the model's `resize_side`; the quality check's working copy (160 px) is smaller.
    """
    image = open_photo(data, limits, need_side)
    return image, check_quality(image, thresholds)


async def analyse_photo(
    data: bytes,
    predictor: Predictor,
    limits: IntakeLimits = IntakeLimits(),
    thresholds: QualityThresholds = QualityThresholds(),
    predict_poor_photos: bool = False,
    slots: DecodeSlots | None = None,
) -> PhotoAnalysis:
    """Everything the bot needs to answer a photo.

    A photo that fails the quality check is not predicted unless asked: the reference study
    found those are the photos the model misreads, so the honest answer is "please retake it".
    `slots`: the process's decode slots (None: no bound, e.g. the one-photo CLI).
    """
    need = decode_side(predictor.card)
    try:
        async with slots.held() if slots else nullcontext():
            image, quality = await asyncio.to_thread(check_photo, data, limits, thresholds, need)
    except ImageRejected as rejected:
        return PhotoAnalysis(rejected=rejected)
    if not quality.ok and not predict_poor_photos:
        return PhotoAnalysis(image=image, quality=quality)
    prediction = await predictor.predict(image)
    return PhotoAnalysis(image=image, quality=quality, prediction=prediction)


async def explain_photo(
    data: bytes,
    predictor: Predictor,
    label: str,
    limits: IntakeLimits = IntakeLimits(),
    slots: DecodeSlots | None = None,
) -> bytes:
    """Where the model looked for `label` in this photo, as a PNG heatmap. Raises ImageRejected.

    The one entry for "Where did it look?": the photo was analysed (and its quality judged)
    when it was sent, so only its decoding is repeated here, not the quality check.
    """
    need = max(HEATMAP_SIDE, decode_side(predictor.card))
    async with slots.held() if slots else nullcontext():
        image = await asyncio.to_thread(open_photo, data, limits, need)
    return await predictor.gradcam_png(image, label)
