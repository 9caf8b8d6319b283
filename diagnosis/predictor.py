"""From checked images to calibrated predictions.

`Classifier` is the synchronous model wrapper (preprocessing from the model card, temperature
scaling, top-3, abstention, Grad-CAM). `Predictor` is its asyncio face: calls from many chats are
queued, gathered into small batches and run on one worker thread, so the event loop never blocks
on the model and concurrent photos share a forward pass.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from diagnosis.bundle import Bundle, ModelCard

TOP_K = 3

_INTERPOLATIONS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class RankedLabel:
    label: str
    name_en: str
    name_ko: str
    prob: float


@dataclass(frozen=True)
class Prediction:
    top: tuple[RankedLabel, ...]  # the TOP_K most likely labels, most likely first
    probabilities: dict[str, float]  # every label, temperature-scaled
    abstain: bool  # True: the model should say "I can't tell"
    urgent: bool  # True: possible skin cancer, whatever the top answer (card's referral rule)
    model_version: str

    @property
    def best(self) -> RankedLabel:
        return self.top[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "top": [
                {"label": r.label, "name_en": r.name_en, "name_ko": r.name_ko, "prob": r.prob}
                for r in self.top
            ],
            "abstain": self.abstain,
            "urgent": self.urgent,
            "model": self.model_version,
        }


def preprocess(image: Image.Image, card: ModelCard) -> torch.Tensor:
    """Resize the short side, centre-crop to the card's input size, normalise: a CHW tensor."""
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
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


class Classifier:
    """The model and its card. Not thread-safe: `Predictor` gives it one worker thread."""

    def __init__(self, bundle: Bundle):
        self.card = bundle.card
        self.model = bundle.model.eval()
        self.version = bundle.card.version

    def logits(self, images: list[Image.Image]) -> torch.Tensor:
        batch = torch.stack([preprocess(image, self.card) for image in images])
        with torch.inference_mode():
            return self.model(batch).float()

    def predict_batch(self, images: list[Image.Image]) -> list[Prediction]:
        if not images:
            return []
        probabilities = torch.softmax(self.logits(images) / self.card.temperature, dim=1)
        return [self._prediction(row) for row in probabilities.numpy()]

    def _prediction(self, probs: np.ndarray) -> Prediction:
        card = self.card
        order = np.argsort(-probs)[:TOP_K]
        top = tuple(
            RankedLabel(
                label=card.labels[i],
                name_en=card.display_name(card.labels[i], "en"),
                name_ko=card.display_name(card.labels[i], "ko"),
                prob=round(float(probs[i]), 4),
            )
            for i in order
        )
        best = top[0]
        abstain = best.prob < card.abstain_threshold or best.label == card.other_label
        malignant = sum(float(probs[card.labels.index(label)]) for label in card.malignant_labels)
        return Prediction(
            top=top,
            probabilities={label: float(p) for label, p in zip(card.labels, probs, strict=True)},
            abstain=abstain,
            urgent=bool(card.malignant_labels) and malignant >= card.urgent_threshold,
            model_version=self.version,
        )

    def gradcam_png(self, image: Image.Image, label: str | None = None) -> bytes:
        """A heatmap of where the model looked for `label` (default: its top answer)."""
        from diagnosis.gradcam import grad_cam, overlay_png

        tensor = preprocess(image, self.card).unsqueeze(0)
        class_index = self.card.labels.index(label) if label else None
        heatmap = grad_cam(self.model, tensor, class_index)
        return overlay_png(_center_crop_like(image, self.card), heatmap)


def _center_crop_like(image: Image.Image, card: ModelCard) -> Image.Image:
    """The part of the photo the model saw, at a size that is pleasant to look at."""
    _, height, width = card.input_size
    side = min(image.size) * card.crop_pct
    aspect = width / height
    crop_w, crop_h = (side * aspect, side) if aspect <= 1 else (side, side / aspect)
    left = (image.width - crop_w) / 2
    top = (image.height - crop_h) / 2
    return image.crop((round(left), round(top), round(left + crop_w), round(top + crop_h)))


@dataclass
class _Request:
    image: Image.Image
    future: asyncio.Future


class Predictor:
    """Async, batching front of a Classifier.

    Requests wait at most `max_wait_ms` for company and are run `max_batch` at a time on a
    single worker thread (so the model is never used by two threads at once).
    """

    def __init__(self, classifier: Classifier, max_batch: int = 16, max_wait_ms: float = 5.0):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.classifier = classifier
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predictor")
        self._queue: asyncio.Queue[_Request] | None = None
        self._batcher: asyncio.Task | None = None
        self.batches_run = 0  # observability: how many forward passes served the requests

    @property
    def card(self) -> ModelCard:
        return self.classifier.card

    async def predict(self, image: Image.Image) -> Prediction:
        self._ensure_started()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(image, future))
        return await future

    async def predict_many(self, images: list[Image.Image]) -> list[Prediction]:
        return list(await asyncio.gather(*(self.predict(image) for image in images)))

    async def gradcam_png(self, image: Image.Image, label: str | None = None) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.classifier.gradcam_png, image, label)

    async def close(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
            try:
                await self._batcher
            except asyncio.CancelledError:
                pass
            self._batcher = None
        self._executor.shutdown(wait=True)

    def _ensure_started(self) -> None:
        if self._batcher is None or self._batcher.done():
            self._queue = asyncio.Queue()
            self._batcher = asyncio.get_running_loop().create_task(self._run_batches())

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            batch = [await queue.get()]
            # Give concurrent callers a moment to join this forward pass. A plain sleep and
            # get_nowait avoid cancelling a pending get(), which can drop an item on 3.11.
            if queue.qsize() < self.max_batch - 1:
                await asyncio.sleep(self.max_wait)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            batch = [request for request in batch if not request.future.cancelled()]
            if not batch:
                continue
            try:
                predictions = await loop.run_in_executor(
                    self._executor, self.classifier.predict_batch, [r.image for r in batch]
                )
            except Exception as exc:  # noqa: BLE001 - every waiting caller must hear of it
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            self.batches_run += 1
            for request, prediction in zip(batch, predictions, strict=True):
                if not request.future.done():
                    request.future.set_result(prediction)
