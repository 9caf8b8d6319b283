"""From checked images to calibrated predictions.

`Classifier` is the synchronous model wrapper (preprocessing from the model card, temperature
scaling, top-3, abstention, Grad-CAM). `Predictor` is its asyncio face: calls from many chats are
queued, gathered into small batches and run on one worker thread, so the event loop never blocks
on the model and concurrent photos share a forward pass.

Speed on CPU (docs/performance.md has the measurements): the model runs as frozen TorchScript
graphs, channels-last, batch-norm folded into the convolutions; in bf16 where the CPU computes it
natively (AVX-512 BF16 or AMX). bf16 alone changes 2 % of the bundled model's top answers on the
shared photos, so every bf16 answer that lands close to a decision (top-2 gap, abstention
threshold, urgent threshold) is computed again in fp32, which keeps 99.96 % of them
(docs/performance.md lists the photos that still differ).
`SKINCARE_INFERENCE=fp32` (Classifier(inference="fp32")) forces the plain fp32 path.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from diagnosis.bundle import Bundle, ModelCard

log = logging.getLogger(__name__)

TOP_K = 3
INFERENCE_MODES = ("auto", "fp32", "bf16")
# A bf16 answer whose top-2 gap (in temperature-scaled logits), or whose best or malignant
# probability's distance to the abstention or urgent threshold (in log-odds), is below this is
# recomputed in fp32: on the 5,262 shared photos that is 31 % of them, and it takes top-1
# agreement with fp32 from 97.95 % to 99.96 % (bench/agreement.py, docs/performance.md).
RECHECK_MARGIN = 0.5
URGENT_RECHECK_BELOW = 2.0  # logits under the urgent threshold that still get an fp32 recheck
_CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# A batch runs through the graphs in parts of at most this many photos: per photo, EfficientNet-
# Lite0 in bf16 ran 15 % faster at 8 than at 16 (activations stay in cache), ResNet-50 the same.
MICRO_BATCH = 8

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


@cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX-BF16).

    Elsewhere oneDNN emulates bf16, which is slower than fp32: `auto` then means fp32.
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & _CPU_BF16_FLAGS) and torch.backends.mkldnn.is_available()
    return False


def resolve_inference(mode: str) -> str:
    """ "auto" -> "bf16" on a CPU with native bf16, else "fp32"; "fp32" and "bf16" as they are."""
    if mode not in INFERENCE_MODES:
        raise ValueError(f"inference must be one of {', '.join(INFERENCE_MODES)}, not {mode!r}")
    if mode == "auto":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return mode


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may run on, which in a
    container or under taskset can be fewer than the host's) and one inter-op thread (inference
    never runs operators side by side). Process-wide: call it once at start-up."""
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            threads = os.cpu_count() or 1
    threads = max(1, threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only possible before the first inter-op work; keep what is there
        pass
    return threads


def _logit(p: torch.Tensor | float) -> torch.Tensor | float:
    if isinstance(p, torch.Tensor):
        return torch.logit(p, eps=1e-6)
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


class Classifier:
    """The model and its card. Not thread-safe: `Predictor` gives it one worker thread.

    `inference`: "auto" (bf16 where the CPU has it natively, else fp32), "fp32" or "bf16".
    Inference runs frozen graphs built from the model on first use (or by `warm_up`): bf16,
    and fp32 for fp32 mode and for the rechecks of close calls; after changing `self.model`,
    call `rebuild`. Grad-CAM uses `self.model` itself (fp32, eager, channels-last).
    """

    def __init__(
        self, bundle: Bundle, inference: str = "auto", recheck_margin: float = RECHECK_MARGIN
    ):
        self.card = bundle.card
        self.model = bundle.model.eval().to(memory_format=torch.channels_last)
        self.version = bundle.card.version
        self.precision = resolve_inference(inference)
        self.recheck_margin = recheck_margin
        self.rechecked = 0  # bf16 answers close to a decision, computed again in fp32
        self._graphs: dict[torch.dtype, Callable[[torch.Tensor], torch.Tensor]] = {}
        self._malignant = [self.card.labels.index(label) for label in self.card.malignant_labels]

    def warm_up(self) -> None:
        """Build the graphs and run each once, so that the first photo is not slow."""
        _, height, width = self.card.input_size
        batch = torch.zeros(2, 3, height, width).contiguous(memory_format=torch.channels_last)
        self.forward(batch)
        self._run(torch.float32, batch[:1])

    def rebuild(self) -> None:
        """Forget the graphs, after a change to `self.model`: the next use builds new ones."""
        self._graphs.clear()

    def logits(self, images: list[Image.Image]) -> torch.Tensor:
        batch = torch.stack([preprocess(image, self.card) for image in images])
        return self.forward(batch.contiguous(memory_format=torch.channels_last))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits of a preprocessed (N, C, H, W) batch, in this classifier's precision."""
        if self.precision == "fp32":
            return self._run(torch.float32, batch)
        logits = self._run(torch.bfloat16, batch)
        if self.recheck_margin > 0:
            close = self._close_calls(logits)
            if bool(close.any()):
                logits[close] = self._run(torch.float32, batch[close])
                self.rechecked += int(close.sum())
        return logits

    def _close_calls(self, logits: torch.Tensor) -> torch.Tensor:
        """Rows whose decisions (top answer, abstain, urgent) bf16's error could have changed."""
        card, margin = self.card, self.recheck_margin
        scaled = logits / card.temperature
        if scaled.shape[1] < 2:
            return torch.zeros(len(scaled), dtype=torch.bool)
        top2 = scaled.topk(2, dim=1).values
        close = (top2[:, 0] - top2[:, 1]) < margin
        probs = torch.softmax(scaled, dim=1)
        best = probs.max(dim=1).values
        close |= (_logit(best) - _logit(card.abstain_threshold)).abs() < margin
        if self._malignant:
            malignant = probs[:, self._malignant].sum(dim=1)
            gap = _logit(malignant) - _logit(card.urgent_threshold)
            # One-sided and wider below the threshold: a lost "see a dermatologist soon" is the
            # costly error (bf16 once put a photo at 0.023 that fp32 puts at 0.060, over 0.05).
            close |= (gap > -URGENT_RECHECK_BELOW) & (gap < margin)
        return close

    def _run(self, dtype: torch.dtype, batch: torch.Tensor) -> torch.Tensor:
        graph = self._graphs.get(dtype)
        if graph is None:
            graph = self._graphs[dtype] = self._build(dtype)
        return graph(batch)

    def _build(self, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
        """A frozen TorchScript graph of a copy of the model as it is now, in `dtype` and
        channels-last, batch-norm folded into the convolutions. A model that cannot be traced
        runs eagerly (bf16 by autocast)."""
        _, height, width = self.card.input_size
        example = torch.zeros(2, 3, height, width, dtype=dtype)
        example = example.contiguous(memory_format=torch.channels_last)
        model = copy.deepcopy(self.model).to(dtype).requires_grad_(False)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation and tracer notes
                # freeze folds batch-norm into the convolutions; optimize_for_inference was
                # slower here (layout conversions around every unsupported op).
                graph = torch.jit.freeze(torch.jit.trace(model, example))
        except Exception as exc:  # noqa: BLE001 - any tracing failure: eager still works
            log.warning("no %s graph for this model (%s); running it eagerly", dtype, exc)
            bf16 = dtype == torch.bfloat16

            def eager(batch: torch.Tensor) -> torch.Tensor:
                with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    return self.model(batch).float()

            return eager

        def frozen(batch: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat(
                    [graph(part.to(dtype)).float() for part in batch.split(MICRO_BATCH)]
                )

        return frozen

    def predict_batch(self, images: list[Image.Image]) -> list[Prediction]:
        if not images:
            return []
        return self.predictions(self.logits(images))

    def predictions(self, logits: torch.Tensor) -> list[Prediction]:
        probabilities = torch.softmax(logits / self.card.temperature, dim=1)
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

    def __init__(
        self,
        classifier: Classifier,
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
