"""Exporting a bundle to ONNX for diagnosis.serving.onnx_backend (needs torch and `onnx`).

The graph has two outputs: the logits, and the class activation maps
`maps[n, c] = sum_k W[c, k] * A[n, k]` of the last convolutional features A and the linear
classifier W. The models exported here pool A by global averaging straight into W, so the
gradient of class c's logit with respect to A is W[c, k] / (h * w) everywhere, and Grad-CAM's map
is exactly ReLU(maps[c]) up to a positive factor, which the [0, 1] scaling removes: Grad-CAM
without autograd. The export checks that premise numerically (logits == mean(maps) + bias) and
refuses a model where it does not hold.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from diagnosis.bundle import ONNX_FILE, BundleError, ModelCard, load_bundle, sha256_of, write_card

log = logging.getLogger(__name__)

OPSET = 17


def export_onnx(directory: Path | str, card: ModelCard | None = None) -> Path:
    """Write `directory`/model.onnx from the bundle's saved weights and record it in the card.

    `card`: the caller's card object to update and write (training keeps its own); default the
    card on disk. Needs torch and the `onnx` package (both training dependencies).
    """
    directory = Path(directory)
    bundle = load_bundle(directory)  # the saved (possibly half-precision) weights, widened
    # eval() on the wrapper too: the exporter restores the wrapper's own mode afterwards, and a
    # new Module is in training mode, which would put batch-norm into training.
    wrapper = LogitsAndClassMaps(bundle.model.float()).eval()
    _, height, width = bundle.card.input_size
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    wrapper.check_class_maps(example)
    path = directory / ONNX_FILE
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notes
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["images"],
            output_names=["logits", "class_maps"],
            dynamic_axes={"images": {0: "n"}, "logits": {0: "n"}, "class_maps": {0: "n"}},
            opset_version=OPSET,
            dynamo=False,  # the dynamo exporter needs onnxscript, not installed
        )
    card = card or bundle.card
    card.onnx_sha256 = sha256_of(path)
    card.onnx_weights_sha256 = card.weights_sha256
    write_card(card, directory)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


class LogitsAndClassMaps(torch.nn.Module):
    """The model's logits plus the class activation maps of its last features."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        if not isinstance(head, torch.nn.Linear) or not hasattr(model, "forward_features"):
            raise BundleError(
                f"{type(model).__name__}: ONNX export needs a timm model whose head is "
                "global average pooling into one linear layer"
            )
        self.model = model
        self.head = head

    def forward(self, images: torch.Tensor):
        features = self.model.forward_features(images)
        logits = self.model.forward_head(features)
        maps = torch.einsum("nkhw,ck->nchw", features, self.head.weight)
        return logits, maps

    @torch.no_grad()
    def check_class_maps(self, images: torch.Tensor) -> None:
        logits, maps = self(images)
        rebuilt = maps.mean(dim=(2, 3)) + (self.head.bias if self.head.bias is not None else 0.0)
        error = float((rebuilt - logits).abs().max())
        if error > 1e-3 * max(1.0, float(logits.abs().max())):
            raise BundleError(
                f"{type(self.model).__name__}: the logits are not the average of the class "
                f"maps (off by {error:.3g}), so they would not be Grad-CAM: not exported"
            )
