"""Choosing and loading the back-end a `ServingConfig` asks for; shared by the bot and the CLI.

ONNX Runtime serves whenever it can (SKINCARE_RUNTIME auto or onnx, fp32, a current model.onnx).
torch is imported only when asked for or as the fallback for a bundle without a usable
model.onnx, and the log says why: importing it costs ~500 MB and over a second of start-up.
"""

from __future__ import annotations

import logging

from diagnosis.bundle import BundleError, load_bundle, read_card
from diagnosis.config import ServingConfig
from diagnosis.serving.backend import Backend
from diagnosis.serving.batcher import Predictor
from diagnosis.serving.onnx_backend import OnnxBackend
from envconfig import SettingsError

log = logging.getLogger(__name__)

TRAIN_EXTRA_HINT = "install the training extra: pip install '.[train]'"


def load_backend(config: ServingConfig) -> Backend:
    """The back-end for `config.model_path`. Raises BundleError for a bundle that cannot be
    served, SettingsError when SKINCARE_RUNTIME=onnx cannot be honoured."""
    read_card(config.model_path)  # a missing or broken card is not a reason to try torch
    if config.runtime == "torch":
        reason = "SKINCARE_RUNTIME=torch"
    elif config.inference != "fp32":
        reason = f"SKINCARE_INFERENCE={config.inference} needs torch"
    else:
        try:
            return OnnxBackend(config.model_path)
        except (BundleError, ImportError) as exc:  # no/stale model.onnx, no onnxruntime
            if config.runtime == "onnx":
                raise SettingsError(f"SKINCARE_RUNTIME=onnx: {exc}") from exc
            reason = str(exc)
    try:
        from diagnosis.serving.torch_backend import TorchBackend, configure_threads
    except ImportError as exc:  # the serving install has no torch
        raise BundleError(
            f"cannot serve with torch ({reason}): torch is not installed; {TRAIN_EXTRA_HINT}"
        ) from exc
    log.warning("Serving the model with torch: %s", reason)
    configure_threads()
    return TorchBackend(load_bundle(config.model_path), inference=config.inference)


def load_predictor(config: ServingConfig, warm_up: bool = True) -> Predictor:
    """A `Predictor` over `load_backend(config)`, batching as the config says."""
    backend = load_backend(config)
    log.info(
        "Model %s (%s) loaded; inference %s on %d threads",
        backend.version,
        backend.card.architecture,
        backend.precision,
        backend.threads,
    )
    return Predictor(
        backend, max_batch=config.max_batch, max_wait_ms=config.batch_wait_ms, warm_up=warm_up
    )
