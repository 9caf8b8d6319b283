"""The diagnosis engine: photo intake, quality checks, serving a model bundle, and training one.

    intake, quality, analysis   photo bytes -> checked image -> `PhotoAnalysis`
    bundle                      the model card (the one list of labels) and bundle files
    config                      `ServingConfig`: which bundle, which back-end, batching
    serving/                    back-ends (ONNX Runtime by default, torch), `Predictor`
    training/                   the [train] extra: data, training, calibration, export
    heatmap, cli                the heatmap overlay; `python -m diagnosis`

Serving never imports torch or `diagnosis.training` (tests/diagnosis/test_layout.py checks it).
"""

import os

# OpenMP threads that finish their share of an operator sleep instead of spinning for the next
# one. Spinning wins a little on an idle machine, but where the model shares the CPUs (the bot's
# event loop and photo decoding, other processes) spinning threads wait on descheduled ones:
# on a busy 2-core machine throughput fell 2-10x with spinning (docs/performance.md). Read by
# libgomp when torch is first imported, hence here; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from diagnosis.config import ServingConfig  # noqa: E402 - after the OpenMP setting above

__all__ = ["ServingConfig"]
