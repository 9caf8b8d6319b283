"""The torch back-end: a bundle's timm model as a `Backend` for `Predictor`.

It serves any bundle (the ONNX back-end needs the bundle's model.onnx) and is what training,
evaluation and `SKINCARE_RUNTIME=torch` use. It needs the `[train]` extra (torch, timm):
the bot and `python -m diagnosis predict` import it only when asked for torch or when a bundle
has no usable model.onnx.

Speed on CPU (docs/performance.md has the measurements): the model runs as frozen TorchScript
graphs, channels-last, batch-norm folded into the convolutions; in bf16 where the CPU computes it
natively (AVX-512 BF16 or AMX). bf16 alone changes 2 % of the bundled model's top answers on the
shared photos, so every bf16 answer that lands close to a decision (top-2 gap, abstention
threshold, urgent threshold) is computed again in fp32, which keeps 99.96 % of them
(docs/performance.md lists the photos that still differ).
`SKINCARE_INFERENCE=fp32` (TorchBackend(inference="fp32")) forces the plain fp32 path.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
from PIL import Image

from diagnosis.bundle import Bundle, ModelCard
from diagnosis.config import INFERENCE_MODES
from diagnosis.heatmap import overlay_png
from diagnosis.serving.backend import available_cpus
from diagnosis.serving.postprocess import Prediction, predictions_from_logits
from diagnosis.serving.preprocess import center_crop_like, preprocess_array
from diagnosis.serving.torch_gradcam import grad_cam

log = logging.getLogger(__name__)

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


def preprocess(image: Image.Image, card: ModelCard) -> torch.Tensor:
    """`preprocess_array` as a CHW tensor."""
    return torch.from_numpy(preprocess_array(image, card))


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
    threads = max(1, threads or available_cpus())
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


class TorchBackend:
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
        self.threads = torch.get_num_threads()
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
            return self._logits(torch.float32, batch)
        logits = self._logits(torch.bfloat16, batch)
        if self.recheck_margin > 0:
            close = self._close_calls(logits)
            if bool(close.any()):
                logits[close] = self._logits(torch.float32, batch[close])
                self.rechecked += int(close.sum())
        return logits

    def _logits(self, dtype: torch.dtype, batch: torch.Tensor) -> torch.Tensor:
        logits = self._run(dtype, batch)
        if self.card.test_time_flip:
            mirrored = batch.flip(-1).contiguous(memory_format=torch.channels_last)
            logits = (logits + self._run(dtype, mirrored)) / 2
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
        return predictions_from_logits(logits.float().numpy(), self.card)

    def gradcam_png(self, image: Image.Image, label: str | None = None) -> bytes:
        """A heatmap of where the model looked for `label` (default: its top answer)."""
        tensor = preprocess(image, self.card).unsqueeze(0)
        class_index = self.card.labels.index(label) if label else None
        heatmap = grad_cam(self.model, tensor, class_index)
        return overlay_png(center_crop_like(image, self.card), heatmap)
