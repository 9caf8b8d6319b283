"""Serving a model bundle: photos in, calibrated predictions out, without torch by default.

    backend.py        the `Backend` protocol every back-end meets
    onnx_backend.py   `OnnxBackend`: the bundle's model.onnx on ONNX Runtime (the default)
    torch_backend.py  `TorchBackend`: the bundle's timm model in torch (needs the [train] extra)
    batcher.py        `Predictor`: batches concurrent photos on one worker thread
    preprocess.py     photo -> model input, from the model card
    postprocess.py    logits -> `Prediction` (temperature, top-3, abstain, urgent)
    loader.py         `load_backend` / `load_predictor`: the back-end a `ServingConfig` asks for

Nothing here imports torch or `diagnosis.training` at module level except torch_backend.py and
torch_gradcam.py, which only the torch back-end loads.
"""

from diagnosis.serving.backend import Backend
from diagnosis.serving.batcher import Predictor
from diagnosis.serving.loader import load_backend, load_predictor
from diagnosis.serving.onnx_backend import OnnxBackend
from diagnosis.serving.postprocess import Prediction, RankedLabel

__all__ = [
    "Backend",
    "OnnxBackend",
    "Prediction",
    "Predictor",
    "RankedLabel",
    "load_backend",
    "load_predictor",
]
