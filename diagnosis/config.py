"""`ServingConfig`: how the diagnosis engine serves a model, read once from the environment.

The bot (`bot.settings.Settings.serving`) and `python -m diagnosis predict` both build it with
`ServingConfig.from_env()`, so they load the same bundle on the same back-end. A bad value stops
start-up with a `SettingsError` that names the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from diagnosis.bundle import BUNDLED_MODEL_DIR
from envconfig import EnvReader

# Back-ends: "onnx" (ONNX Runtime, fp32; the default where the bundle has model.onnx) or "torch"
# (needs the [train] extra); "auto" picks onnx when it can. INFERENCE_MODES are the torch
# back-end's precisions ("auto": bf16 where the CPU computes it natively).
RUNTIMES = ("auto", "onnx", "torch")
INFERENCE_MODES = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class ServingConfig:
    model_path: Path = BUNDLED_MODEL_DIR
    model_explicit: bool = False  # True when SKINCARE_MODEL was set: then it must load
    # fp32 by default: for the bundled model, bf16 plus the fp32 rechecks that keep its urgent
    # referrals is slower than fp32 on this CPU (docs/performance.md); "auto" opts into bf16.
    inference: str = "fp32"
    # auto: ONNX Runtime when the bundle has a current model.onnx and inference is fp32 (twice
    # the speed and 500 MB less memory than torch here, same answers), else torch.
    runtime: str = "auto"
    max_batch: int = 16  # photos per forward pass
    batch_wait_ms: float = 5.0  # how long a photo waits for company

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingConfig:
        reader = EnvReader(env)
        defaults = cls()
        model_value = reader.text("SKINCARE_MODEL")
        config = cls(
            model_path=Path(model_value).expanduser() if model_value else defaults.model_path,
            model_explicit=model_value is not None,
            inference=reader.choice("SKINCARE_INFERENCE", INFERENCE_MODES, defaults.inference),
            runtime=reader.choice("SKINCARE_RUNTIME", RUNTIMES, defaults.runtime),
            max_batch=reader.integer("SKINCARE_MAX_BATCH", defaults.max_batch, 1, 256),
            batch_wait_ms=reader.number("SKINCARE_BATCH_WAIT_MS", defaults.batch_wait_ms, 0, 1000),
        )
        if config.runtime == "onnx" and config.inference != "fp32":
            reader.fail(
                "SKINCARE_RUNTIME",
                f"onnx computes in fp32 only; SKINCARE_INFERENCE={config.inference} needs torch",
            )
        if config.model_explicit and not config.model_path.is_dir():
            reader.fail("SKINCARE_MODEL", f"{config.model_path} is not a model bundle folder")
        return config
