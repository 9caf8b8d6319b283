"""What every classifier back-end shares, without importing torch.

A classifier turns photos into logits; everything from there on is the same whichever library
computed them: preprocessing from the model card, temperature scaling, top-3, abstention, the
urgent referral rule, and `Predictor`, the asyncio face that gathers concurrent photos into
batches on one worker thread. The bot imports only this module and the back-end it serves with
(`diagnosis.onnx_classifier` by default, `diagnosis.predictor` for torch), so a bot serving the
ONNX model never loads torch (about 500 MB of memory with the PyPI build).
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from diagnosis.bundle import ModelCard

log = logging.getLogger(__name__)

TOP_K = 3
# Back-ends: "onnx" (ONNX Runtime, fp32; the default where the bundle has model.onnx) or "torch";
# "auto" picks onnx when it can. INFERENCE_MODES are the torch back-end's precisions.
RUNTIMES = ("auto", "onnx", "torch")
INFERENCE_MODES = ("auto", "fp32", "bf16")

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


class Backend(Protocol):
    """What `Predictor` needs of a classifier back-end (`OnnxClassifier`, torch's `Classifier`).
    Used from one thread at a time."""

    card: ModelCard
    version: str
    precision: str  # how it computes, for the start-up log
    threads: int

    def warm_up(self) -> None: ...

    def predict_batch(self, images: list[Image.Image]) -> list[Prediction]: ...

    def gradcam_png(self, image: Image.Image, label: str | None = None) -> bytes: ...


def available_cpus() -> int:
    """The CPUs this process may run on (in a container or under taskset, fewer than the host's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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


def calibrated_probabilities(logits: np.ndarray, card: ModelCard) -> np.ndarray:
    """Softmax of temperature-scaled logits, row by row, in float64 (no overflow)."""
    scaled = np.asarray(logits, dtype=np.float64) / card.temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def predictions_from_logits(logits: np.ndarray, card: ModelCard) -> list[Prediction]:
    return [
        prediction_from_probabilities(row, card) for row in calibrated_probabilities(logits, card)
    ]


def prediction_from_probabilities(probs: np.ndarray, card: ModelCard) -> Prediction:
    order = np.argsort(-probs, kind="stable")[:TOP_K]
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
        model_version=card.version,
    )


def center_crop_like(image: Image.Image, card: ModelCard) -> Image.Image:
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
    """Async, batching front of a classifier back-end.

    Requests wait at most `max_wait_ms` for company and are run `max_batch` at a time on a
    single worker thread (so the model is never used by two threads at once).
    """

    def __init__(
        self,
        classifier: Backend,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        warm_up: bool = False,
    ):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.classifier = classifier
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predictor")
        if warm_up:
            # On the worker thread, ahead of any request (they queue behind it), while the rest
            # of start-up goes on; a failure is logged and the first request builds it again.
            self._executor.submit(self._warm_up)
        self._queue: asyncio.Queue[_Request] | None = None
        self._batcher: asyncio.Task | None = None
        self.batches_run = 0  # observability: how many forward passes served the requests

    @property
    def card(self) -> ModelCard:
        return self.classifier.card

    def _warm_up(self) -> None:
        try:
            self.classifier.warm_up()
        except Exception:  # noqa: BLE001 - start-up goes on; requests will show the problem
            log.exception("model warm-up failed")

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
