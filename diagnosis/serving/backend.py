"""What `Predictor` needs of a back-end: `OnnxBackend` (the default) or `TorchBackend`."""

from __future__ import annotations

import os
from typing import Protocol

from PIL import Image

from diagnosis.bundle import ModelCard
from diagnosis.serving.postprocess import Prediction


class Backend(Protocol):
    """A bundle's model, ready to answer photos. Used from one thread at a time."""

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
