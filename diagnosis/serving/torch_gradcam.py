"""Grad-CAM heatmaps for timm classifiers in torch (the torch back-end's `gradcam_png`).

Grad-CAM (Selvaraju et al., 2017) weights the channels of a late convolutional layer by the
spatially averaged gradient of the class score, keeps the positive part and upsamples it to the
input. It is cheap (one forward and one partial backward pass) and needs no change to the model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diagnosis.heatmap import stretch_to_unit


def target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The layer whose activations and gradients Grad-CAM uses for this timm model family."""
    # ResNets: the last stage is the deepest map that still has a spatial extent.
    layer4 = getattr(model, "layer4", None)
    if isinstance(layer4, torch.nn.Module):
        return layer4
    # EfficientNets / MobileNetV2: bn2 is the BatchNormAct after conv_head, so its output is the
    # activated last conv map that global pooling reads. conv_head alone would be pre-norm.
    conv_head = getattr(model, "conv_head", None)
    bn2 = getattr(model, "bn2", None)
    if isinstance(conv_head, torch.nn.Module) and isinstance(bn2, torch.nn.Module):
        return bn2
    feature_info = getattr(model, "feature_info", None)
    if feature_info:
        try:
            name = feature_info[-1]["module"]
        except (IndexError, KeyError, TypeError):
            name = None
        if name:
            try:
                return model.get_submodule(name)
            except AttributeError:
                pass
    raise ValueError(f"no Grad-CAM target layer known for {type(model).__name__}")


def grad_cam(
    model: torch.nn.Module, batch: torch.Tensor, class_index: int | None = None
) -> np.ndarray:
    """Heatmap (H, W), float32 in [0, 1], of the evidence for `class_index` (default: top class).

    `batch` is one normalised image, shape (1, C, H, W). The model's mode is left as it is: call
    it in eval mode, or batch-norm statistics would move.
    """
    if batch.dim() != 4 or batch.shape[0] != 1:
        raise ValueError(f"expected a batch of one image (1, C, H, W), got {tuple(batch.shape)}")
    layer = target_layer(model)
    height, width = batch.shape[-2:]
    captured: list[torch.Tensor] = []

    def keep_output(_module, _inputs, output):
        captured.append(output)

    handle = layer.register_forward_hook(keep_output)
    try:
        # Grad mode and inference mode are thread-local, so this is safe on a worker thread and
        # overrides whatever the caller wrapped us in. Leaving inference mode is needed as well as
        # enabling grad: inside it no autograd graph is ever recorded.
        with torch.inference_mode(False), torch.enable_grad():
            # The clone turns a possible inference tensor into a normal one; requiring grad on it
            # makes the graph exist even when every parameter is frozen, without touching the
            # parameters' own requires_grad flags.
            inputs = batch.detach().clone().requires_grad_(True)
            logits = model(inputs)
            if not captured:
                raise RuntimeError(f"target layer of {type(model).__name__} did not run")
            activations = captured[-1]
            if class_index is None:
                class_index = int(logits[0].argmax())
            elif not 0 <= class_index < logits.shape[1]:
                raise IndexError(f"class_index {class_index} out of range for {logits.shape[1]}")
            # autograd.grad rather than backward(): nothing accumulates into parameter .grad.
            (gradients,) = torch.autograd.grad(logits[0, class_index], activations)
        with torch.no_grad():
            activations = activations.detach().float()
            weights = gradients.float().mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * activations).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=(height, width), mode="bilinear", align_corners=False)
            return stretch_to_unit(cam[0, 0].cpu().numpy())
    finally:
        handle.remove()
