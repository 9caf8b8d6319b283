"""The ONNX Runtime back-end: the bot's default way to run a bundle.

Why: on this project's CPUs ONNX Runtime runs the bundled EfficientNet-Lite0 in fp32 about twice
as fast as torch's frozen fp32 graph, with the same answers (largest logit difference ~1e-5), and
a bot that never imports torch needs about 500 MB less memory (docs/performance.md).

A bundle gets its `model.onnx` from training or from `python -m diagnosis export-onnx`
(diagnosis/training/export.py, which explains the graph's second output, the class activation maps
that give Grad-CAM without autograd). The card records the ONNX file's checksum and the checksum
of the weights it came from: a bundle whose weights were replaced after the export is refused
here, never served from stale weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from diagnosis.bundle import ONNX_FILE, BundleError, ModelCard, read_card, sha256_of
from diagnosis.heatmap import overlay_png, stretch_to_unit
from diagnosis.serving.backend import available_cpus
from diagnosis.serving.postprocess import Prediction, predictions_from_logits
from diagnosis.serving.preprocess import center_crop_like, preprocess_array

log = logging.getLogger(__name__)

# Photos per ONNX Runtime call. Its memory arena grows to the largest batch it has seen: a
# process at 8 peaked at 230 MB against 510 MB at 16, for 5 % fewer photos per second.
MICRO_BATCH = 8


def onnx_problem(directory: Path, card: ModelCard | None = None) -> str | None:
    """Why this bundle's model.onnx cannot be served, or None when it can."""
    directory = Path(directory)
    card = card or read_card(directory)
    path = directory / ONNX_FILE
    if not path.is_file():
        return f"{path} not found (make it with: python -m diagnosis export-onnx --bundle DIR)"
    if not card.onnx_sha256:
        return f"{path}: the model card records no checksum for it (export it again)"
    if card.onnx_weights_sha256 != card.weights_sha256:
        return f"{path} was exported from other weights than the bundle's (export it again)"
    if sha256_of(path) != card.onnx_sha256:
        return f"{path}: checksum does not match the model card (corrupt or replaced)"
    return None


class OnnxBackend:
    """A bundle's model.onnx on ONNX Runtime's CPU provider: the bot's default `Backend`.

    Not thread-safe by contract (Predictor gives it one worker thread), although ONNX Runtime
    sessions themselves are.
    """

    precision = "fp32 (ONNX Runtime)"

    def __init__(self, directory: Path | str, threads: int | None = None):
        import onnxruntime

        directory = Path(directory)
        self.card = read_card(directory)
        problem = onnx_problem(directory, self.card)
        if problem:
            raise BundleError(problem)
        self.version = self.card.version
        self.threads = threads or available_cpus()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Buffers planned per input shape would be kept for every batch size seen.
        options.enable_mem_pattern = False
        # Threads that finish their share sleep instead of spinning for the next operator: where
        # the model shares the CPUs with the bot, spinning threads wait on descheduled ones
        # (the same finding as OMP_WAIT_POLICY=PASSIVE for torch, docs/performance.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only
        try:
            self.session = onnxruntime.InferenceSession(
                str(directory / ONNX_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own types for unreadable graphs
            raise BundleError(f"{directory / ONNX_FILE}: cannot load it: {exc}") from exc
        self._input = self.session.get_inputs()[0].name

    def warm_up(self) -> None:
        _, height, width = self.card.input_size
        self._run(np.zeros((2, 3, height, width), dtype=np.float32), ["logits"])

    def logits(self, images: list[Image.Image]) -> np.ndarray:
        return self.forward(np.stack([preprocess_array(image, self.card) for image in images]))

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Logits of a preprocessed (N, C, H, W) float32 batch."""
        logits = self._run(batch, ["logits"])[0]
        if self.card.test_time_flip:
            mirrored = np.ascontiguousarray(batch[..., ::-1])
            logits = (logits + self._run(mirrored, ["logits"])[0]) / 2
        return logits

    def predict_batch(self, images: list[Image.Image]) -> list[Prediction]:
        if not images:
            return []
        return predictions_from_logits(self.logits(images), self.card)

    def gradcam_png(self, image: Image.Image, label: str | None = None) -> bytes:
        """Grad-CAM of `label` (default: the top answer), from the class activation maps."""
        _, height, width = self.card.input_size
        batch = preprocess_array(image, self.card)[None]
        logits, maps = self._run(batch, ["logits", "class_maps"])
        class_index = self.card.labels.index(label) if label else int(logits[0].argmax())
        cam = np.maximum(maps[0, class_index], 0.0).astype(np.float32)
        # Bilinear with pixel centres aligned, as Grad-CAM's F.interpolate(align_corners=False).
        upsampled = np.asarray(
            Image.fromarray(cam, mode="F").resize((width, height), Image.Resampling.BILINEAR)
        )
        return overlay_png(center_crop_like(image, self.card), stretch_to_unit(upsampled))

    def _run(self, batch: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        parts = [
            self.session.run(outputs, {self._input: batch[start : start + MICRO_BATCH]})
            for start in range(0, len(batch), MICRO_BATCH)
        ]
        return [np.concatenate([part[i] for part in parts]) for i in range(len(outputs))]
