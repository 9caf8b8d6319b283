"""Which back-end serves the model (SKINCARE_RUNTIME); the default one never loads torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bot.app import load_classifier
from bot.settings import Settings, SettingsError
from diagnosis.bundle import BUNDLED_MODEL_DIR
from diagnosis.onnx_classifier import OnnxClassifier
from diagnosis.onnx_export import export_onnx
from diagnosis.predictor import Classifier as TorchClassifier

from helpers import REPO_ROOT, make_bundle

# Builds the assistant as `make run` does, answers one real photo and draws its heatmap, then
# reports which heavy libraries the process imported and its peak memory.
NO_TORCH_SCRIPT = """
import asyncio, json, sys
from PIL import Image
from bot.app import build_assistant
from bot.settings import Settings

async def main(photo):
    assistant = build_assistant(Settings.from_env({}))
    image = Image.open(photo).convert("RGB")
    prediction = await assistant.predictor.predict(image)
    heatmap = await assistant.predictor.gradcam_png(image)
    await assistant.predictor.close()
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print(json.dumps({
        "backend": type(assistant.predictor.classifier).__name__,
        "label": prediction.best.label,
        "heatmap_png": heatmap[:8] == b"\\x89PNG\\r\\n\\x1a\\n",
        "imported": sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules),
        "peak_rss_mb": int(status["VmHWM"].split()[0]) // 1024,
    }))

asyncio.run(main(sys.argv[1]))
"""


def test_the_default_bot_serves_onnx_without_importing_torch(real_photo_paths):
    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH_SCRIPT, str(real_photo_paths[0])],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "OnnxClassifier"
    assert report["heatmap_png"] and report["label"]
    assert report["imported"] == []
    # With torch imported the same process peaked near 1 GB; reported, not a speed claim.
    print(f"peak RSS of the ONNX bot after a photo and a heatmap: {report['peak_rss_mb']} MB")


def test_bundled_model_uses_onnx_by_default_and_torch_on_request():
    assert isinstance(load_classifier(Settings.from_env({})), OnnxClassifier)
    torch_settings = Settings.from_env({"SKINCARE_RUNTIME": "torch"})
    assert isinstance(load_classifier(torch_settings), TorchClassifier)
    bf16 = Settings.from_env({"SKINCARE_INFERENCE": "bf16"})  # bf16 exists on torch only
    assert isinstance(load_classifier(bf16), TorchClassifier)
    assert BUNDLED_MODEL_DIR.joinpath("model.onnx").is_file()


def test_a_bundle_without_onnx_falls_back_to_torch_or_fails_when_onnx_is_asked(tmp_path, caplog):
    bundle = make_bundle(tmp_path / "no-onnx")
    auto = Settings.from_env({"SKINCARE_MODEL": str(bundle)})
    assert isinstance(load_classifier(auto), TorchClassifier)
    assert "model.onnx" in caplog.text and "not found" in caplog.text
    with pytest.raises(SettingsError, match="^SKINCARE_RUNTIME=onnx: .*model.onnx not found"):
        load_classifier(
            Settings.from_env({"SKINCARE_MODEL": str(bundle), "SKINCARE_RUNTIME": "onnx"})
        )
    export_onnx(bundle)
    assert isinstance(load_classifier(auto), OnnxClassifier)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"SKINCARE_RUNTIME": "tensorrt"}, "SKINCARE_RUNTIME"),
        ({"SKINCARE_RUNTIME": "onnx", "SKINCARE_INFERENCE": "bf16"}, "SKINCARE_RUNTIME"),
    ],
)
def test_bad_runtime_settings_name_the_setting(env, message):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)
