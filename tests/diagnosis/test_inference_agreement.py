"""The fast inference paths give the plain fp32 model's answers, on real photos.

The bundled model and 40 photos of the shared dataset, one batch per path: the plain fp32 model
(eager, as loaded) is the reference. bench/agreement.py measures the same on all the photos.
"""

from __future__ import annotations

import copy

import pytest
import torch
from PIL import Image

from diagnosis.bundle import BUNDLED_MODEL_DIR, load_bundle
from diagnosis.serving.torch_backend import (
    TorchBackend,
    cpu_has_native_bf16,
    preprocess,
    resolve_inference,
)

PHOTOS = 40
MIN_TOP1_AGREEMENT = 0.995  # 40 of 40 here
MAX_PROB_DIFF_BF16 = 0.15  # up to ~0.11 on these 40 photos (0.38 on 1 photo of all 5,262)


@pytest.fixture(scope="module")
def bundle():
    if not (BUNDLED_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip("no bundled model")
    return load_bundle(BUNDLED_MODEL_DIR)


@pytest.fixture(scope="module")
def batch(bundle, dataset_dir, manifest_rows) -> torch.Tensor:
    rows = sorted(manifest_rows, key=lambda row: row["file"])
    files = [row["file"] for row in rows[:: len(rows) // PHOTOS][:PHOTOS]]
    images = [Image.open(dataset_dir / name).convert("RGB") for name in files]
    return torch.stack([preprocess(image, bundle.card) for image in images])


@pytest.fixture(scope="module")
def reference(bundle, batch) -> torch.Tensor:
    plain = copy.deepcopy(bundle.model).eval()
    with torch.inference_mode():
        logits = plain(batch).float()
        if bundle.card.test_time_flip:  # the served answer averages photo and mirror image
            logits = (logits + plain(batch.flip(-1)).float()) / 2
        return logits


def decisions(logits: torch.Tensor, card) -> dict[str, torch.Tensor]:
    probs = torch.softmax(logits / card.temperature, dim=1)
    best, top = probs.max(dim=1)
    malignant = [card.labels.index(label) for label in card.malignant_labels]
    return {
        "probs": probs,
        "top": top,
        "abstain": (best < card.abstain_threshold) | (top == card.labels.index(card.other_label)),
        "urgent": probs[:, malignant].sum(dim=1) >= card.urgent_threshold,
    }


def compare(classifier: TorchBackend, batch, reference) -> dict[str, float]:
    card = classifier.card
    got = decisions(classifier.forward(batch.contiguous(memory_format=torch.channels_last)), card)
    want = decisions(reference, card)
    return {
        "top1": float((got["top"] == want["top"]).float().mean()),
        "abstain": float((got["abstain"] == want["abstain"]).float().mean()),
        "urgent": float((got["urgent"] == want["urgent"]).float().mean()),
        "max_prob_diff": float((got["probs"] - want["probs"]).abs().max()),
    }


def test_auto_means_bf16_only_on_a_cpu_with_native_bf16():
    assert resolve_inference("auto") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_inference("fp32") == "fp32"
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        resolve_inference("int8")


def test_fp32_path_gives_the_plain_models_answers(bundle, batch, reference):
    result = compare(TorchBackend(bundle, inference="fp32"), batch, reference)
    assert result["top1"] == result["abstain"] == result["urgent"] == 1.0
    assert result["max_prob_diff"] < 1e-4


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_path_agrees_with_fp32_on_real_photos(bundle, batch, reference):
    classifier = TorchBackend(bundle, inference="bf16")
    result = compare(classifier, batch, reference)
    assert result["top1"] >= MIN_TOP1_AGREEMENT, result
    # "I can't tell" and "see a dermatologist soon" are answers too.
    assert result["abstain"] == 1.0 and result["urgent"] == 1.0, result
    assert result["max_prob_diff"] < MAX_PROB_DIFF_BF16, result
    # The bf16 graph ran (not only fp32): most photos were not close calls.
    assert 0 < classifier.rechecked < PHOTOS


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_close_calls_are_what_keeps_bf16_answers(bundle, batch, reference):
    """Without the fp32 recheck bf16 alone must still be close (else the recheck would be
    doing all the work), and the recheck margin is what brings it to full agreement."""
    alone = compare(TorchBackend(bundle, inference="bf16", recheck_margin=0), batch, reference)
    assert alone["top1"] >= 0.9, alone
    assert alone["max_prob_diff"] < MAX_PROB_DIFF_BF16, alone


def test_onnx_runtime_gives_the_fp32_answers(bundle, batch, reference):
    from diagnosis.serving.onnx_backend import OnnxBackend, onnx_problem

    if onnx_problem(BUNDLED_MODEL_DIR):
        pytest.fail(
            f"the bundled model must ship a current model.onnx: {onnx_problem(BUNDLED_MODEL_DIR)}"
        )
    onnx = OnnxBackend(BUNDLED_MODEL_DIR)
    got = decisions(torch.from_numpy(onnx.forward(batch.numpy())), bundle.card)
    want = decisions(reference, bundle.card)
    for key in ("top", "abstain", "urgent"):
        assert torch.equal(got[key], want[key]), key
    # Same function, other kernels: float rounding only (measured ~1e-6).
    assert float((got["probs"] - want["probs"]).abs().max()) < 1e-4
