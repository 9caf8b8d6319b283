"""ServingConfig, IntakeLimits and QualityThresholds read their own environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnosis import ServingConfig
from diagnosis.bundle import BUNDLED_MODEL_DIR
from diagnosis.intake import IntakeLimits
from diagnosis.quality import QualityThresholds
from envconfig import SettingsError


def test_defaults_serve_the_bundled_model_on_onnx():
    config = ServingConfig.from_env({})
    assert config == ServingConfig()
    assert config.model_path == BUNDLED_MODEL_DIR and not config.model_explicit
    assert (config.runtime, config.inference) == ("auto", "fp32")
    assert IntakeLimits.from_env({}) == IntakeLimits()
    assert QualityThresholds.from_env({}) == QualityThresholds()


def test_values_are_read(tmp_path):
    config = ServingConfig.from_env(
        {
            "SKINCARE_MODEL": str(tmp_path),
            "SKINCARE_RUNTIME": "Torch",
            "SKINCARE_INFERENCE": "bf16",
            "SKINCARE_MAX_BATCH": "4",
            "SKINCARE_BATCH_WAIT_MS": "2.5",
        }
    )
    assert config.model_path == Path(tmp_path) and config.model_explicit
    assert (config.runtime, config.inference) == ("torch", "bf16")
    assert (config.max_batch, config.batch_wait_ms) == (4, 2.5)
    limits = IntakeLimits.from_env(
        {"SKINCARE_MAX_PHOTO_BYTES": "2048", "SKINCARE_MIN_PHOTO_SIDE": "8"}
    )
    assert (limits.max_bytes, limits.min_side) == (2048, 8)
    assert QualityThresholds.from_env({"SKINCARE_QUALITY_MAX_CLIPPED": "0.5"}).max_clipped == 0.5


@pytest.mark.parametrize(
    "read, env, named",
    [
        (ServingConfig.from_env, {"SKINCARE_MODEL": "/no/such/bundle"}, "SKINCARE_MODEL"),
        (ServingConfig.from_env, {"SKINCARE_RUNTIME": "tensorrt"}, "SKINCARE_RUNTIME"),
        (
            ServingConfig.from_env,
            {"SKINCARE_RUNTIME": "onnx", "SKINCARE_INFERENCE": "bf16"},
            "SKINCARE_RUNTIME",
        ),
        (ServingConfig.from_env, {"SKINCARE_MAX_BATCH": "0"}, "SKINCARE_MAX_BATCH"),
        (ServingConfig.from_env, {"SKINCARE_BATCH_WAIT_MS": "soon"}, "SKINCARE_BATCH_WAIT_MS"),
        (IntakeLimits.from_env, {"SKINCARE_MAX_PHOTO_PIXELS": "10"}, "SKINCARE_MAX_PHOTO_PIXELS"),
        (
            QualityThresholds.from_env,
            {"SKINCARE_QUALITY_MIN_BRIGHTNESS": "dim"},
            "SKINCARE_QUALITY_MIN_BRIGHTNESS",
        ),
    ],
)
def test_bad_values_name_the_variable(read, env, named):
    with pytest.raises(SettingsError) as caught:
        read(env)
    assert str(caught.value).startswith(named)
