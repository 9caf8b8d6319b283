import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from diagnosis.cli import main

from helpers import REPO_ROOT, image_bytes


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_output_for_real_photos(capsys, tiny_bundle, real_photo_paths):
    photos = [str(path) for path in real_photo_paths[:3]]
    code, out, _ = run_cli(capsys, "predict", *photos, "--json", "--bundle", str(tiny_bundle))
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["file"] for line in lines] == photos
    for line in lines:
        assert set(line) >= {"file", "top", "abstain", "quality", "model"}
        assert len(line["top"]) == 3
        assert set(line["top"][0]) == {"label", "name_en", "name_ko", "prob"}
        assert isinstance(line["abstain"], bool)
        assert set(line["quality"]) >= {"ok", "reasons"}
        assert line["model"] == "test-0"


def test_refused_photos_get_their_own_reason_and_exit_1(
    capsys, tmp_path, tiny_bundle, real_photo_paths
):
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(image_bytes(Image.new("RGB", (20, 20))))
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(real_photo_paths[0].read_bytes()[:3000])
    good = str(real_photo_paths[1])
    code, out, _ = run_cli(
        capsys,
        "predict",
        str(text),
        str(tiny),
        str(truncated),
        good,
        "--json",
        "--bundle",
        str(tiny_bundle),
    )
    assert code == 1
    lines = {line["file"]: line for line in map(json.loads, out.splitlines())}
    assert lines[str(text)]["error"] == "not_an_image"
    assert lines[str(tiny)]["error"] == "too_small"
    assert lines[str(truncated)]["error"] == "corrupt"
    assert "top" in lines[good]


def test_human_output_and_gradcam(capsys, tmp_path, tiny_bundle, real_photo_paths):
    out_png = tmp_path / "cam.png"
    code, out, _ = run_cli(
        capsys,
        "predict",
        str(real_photo_paths[0]),
        "--gradcam",
        str(out_png),
        "--bundle",
        str(tiny_bundle),
    )
    assert code == 0
    assert "1. " in out and "abstain:" in out and "quality:" in out and "model: test-0" in out
    assert Image.open(out_png).format == "PNG"


def test_usage_and_model_errors_exit_2(capsys, tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as caught:
        main(["predict"])
    assert caught.value.code == 2
    code, _, err = run_cli(capsys, "predict", "x.jpg", "--bundle", str(tmp_path / "missing"))
    assert code == 2 and "missing" in err


def test_python_dash_m_diagnosis(tiny_bundle, real_photo_paths):
    """The real entry point, as a user runs it."""
    env = {**os.environ, "SKINCARE_MODEL": str(tiny_bundle)}
    result = subprocess.run(
        [sys.executable, "-m", "diagnosis", "predict", str(real_photo_paths[2]), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "test-0"


# The serving install has no torch: a process where importing it fails, as it does there.
WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # `import torch` now raises ModuleNotFoundError
from diagnosis.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def run_without_torch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("SKINCARE_")},
        timeout=120,
    )


def test_without_torch_training_commands_say_what_to_install(tmp_path):
    result = run_without_torch("export-onnx", "--bundle", str(tmp_path))
    assert result.returncode == 2
    assert "needs the training extra (torch is not installed): pip install '.[train]'" in (
        result.stderr
    )


def test_without_torch_a_bundle_without_onnx_says_why_it_cannot_be_served(
    tiny_bundle, real_photo_paths
):
    result = run_without_torch("predict", str(real_photo_paths[0]), "--bundle", str(tiny_bundle))
    assert result.returncode == 2
    assert "model.onnx not found" in result.stderr and "torch is not installed" in result.stderr


def test_without_torch_screening_says_what_to_install(tmp_path):
    result = run_without_torch("screening", "--data", str(tmp_path), "--figures", str(tmp_path))
    assert result.returncode == 2
    assert "`screening` needs the training extra (torch is not installed)" in result.stderr
