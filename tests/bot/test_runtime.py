"""Which back-end serves the model (SKINCARE_RUNTIME); the default one never loads torch, in the
bot nor in `python -m diagnosis predict`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bot.settings import Settings, SettingsError
from diagnosis.bundle import BUNDLED_MODEL_DIR, read_card
from diagnosis.serving.loader import load_backend
from diagnosis.serving.onnx_backend import OnnxBackend
from diagnosis.serving.torch_backend import TorchBackend
from diagnosis.training.export import export_onnx

from helpers import REPO_ROOT, make_bundle

# The training extra, which serving must not import: the first line of both scripts below.
HEAVY_LINE = 'HEAVY = ("torch", "torchvision", "timm", "onnx", "matplotlib")\n'
# Builds the assistant as `make run` does, answers one real photo and draws its heatmap, then
# reports which heavy libraries the process imported and its peak memory.
NO_TORCH_SCRIPT = (
    HEAVY_LINE
    + """
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
        "backend": type(assistant.predictor.backend).__name__,
        "label": prediction.best.label,
        "heatmap_png": heatmap[:8] == b"\\x89PNG\\r\\n\\x1a\\n",
        "imported": sorted(m for m in HEAVY if m in sys.modules),
        "peak_rss_mb": int(status["VmHWM"].split()[0]) // 1024,
    }))

asyncio.run(main(sys.argv[1]))
"""
)

# `python -m diagnosis predict PHOTO --json` exactly as a user runs it (runpy is what `-m` uses);
# at exit, the heavy modules it imported go to stderr.
CLI_SCRIPT = (
    HEAVY_LINE
    + """
import atexit, json, runpy, sys
heavy = lambda: sorted(m for m in HEAVY if m in sys.modules)
atexit.register(lambda: print(json.dumps(heavy()), file=sys.stderr))
sys.argv = ["diagnosis", "predict", sys.argv[1], "--json"]
runpy.run_module("diagnosis", run_name="__main__", alter_sys=True)
"""
)


def run_python(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("SKINCARE_")},
    )


def test_the_default_bot_serves_onnx_without_importing_torch(real_photo_paths):
    result = run_python(NO_TORCH_SCRIPT, str(real_photo_paths[0]))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "OnnxBackend"
    assert report["heatmap_png"] and report["label"]
    assert report["imported"] == []
    # With torch imported the same process peaked near 1 GB; reported, not a speed claim.
    print(f"peak RSS of the ONNX bot after a photo and a heatmap: {report['peak_rss_mb']} MB")


def test_diagnosis_predict_serves_onnx_without_importing_torch(real_photo_paths):
    result = run_python(CLI_SCRIPT, str(real_photo_paths[0]))
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["top"] and answer["model"] == read_card(BUNDLED_MODEL_DIR).version
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []
    assert "torch" not in result.stderr.lower()  # no fallback, no warning about one


def test_bundled_model_uses_onnx_by_default_and_torch_on_request():
    assert isinstance(load_backend(Settings.from_env({}).serving), OnnxBackend)
    torch_settings = Settings.from_env({"SKINCARE_RUNTIME": "torch"})
    assert isinstance(load_backend(torch_settings.serving), TorchBackend)
    bf16 = Settings.from_env({"SKINCARE_INFERENCE": "bf16"})  # bf16 exists on torch only
    assert isinstance(load_backend(bf16.serving), TorchBackend)
    assert BUNDLED_MODEL_DIR.joinpath("model.onnx").is_file()


def test_a_bundle_without_onnx_falls_back_to_torch_or_fails_when_onnx_is_asked(tmp_path, caplog):
    bundle = make_bundle(tmp_path / "no-onnx")
    auto = Settings.from_env({"SKINCARE_MODEL": str(bundle)})
    assert isinstance(load_backend(auto.serving), TorchBackend)
    assert "model.onnx" in caplog.text and "not found" in caplog.text
    with pytest.raises(SettingsError, match="^SKINCARE_RUNTIME=onnx: .*model.onnx not found"):
        load_backend(
            Settings.from_env({"SKINCARE_MODEL": str(bundle), "SKINCARE_RUNTIME": "onnx"}).serving
        )
    export_onnx(bundle)
    assert isinstance(load_backend(auto.serving), OnnxBackend)


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
