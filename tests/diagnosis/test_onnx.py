"""The ONNX Runtime back-end: export, same answers and heatmaps as torch, stale files refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from diagnosis.bundle import ONNX_FILE, BundleError, load_bundle, read_card, save_bundle
from diagnosis.heatmap import stretch_to_unit
from diagnosis.serving.onnx_backend import OnnxBackend, onnx_problem
from diagnosis.serving.preprocess import preprocess_array
from diagnosis.serving.torch_backend import TorchBackend, preprocess
from diagnosis.serving.torch_gradcam import grad_cam
from diagnosis.training.export import LogitsAndClassMaps, export_onnx

from helpers import make_bundle


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = make_bundle(tmp_path_factory.mktemp("onnx") / "bundle", seed=3, half=True)
    export_onnx(directory)
    return directory


def test_export_records_the_file_and_its_weights_in_the_card(exported):
    card = read_card(exported)
    assert (exported / ONNX_FILE).is_file()
    assert len(card.onnx_sha256) == 64
    assert card.onnx_weights_sha256 == card.weights_sha256
    assert onnx_problem(exported) is None


def test_same_answers_as_the_torch_classifier(exported, real_photo_paths):
    images = [Image.open(path).convert("RGB") for path in real_photo_paths]
    torch_answers = TorchBackend(load_bundle(exported), inference="fp32").predict_batch(images)
    onnx_answers = OnnxBackend(exported).predict_batch(images)
    assert len(onnx_answers) == len(images)
    for ours, theirs in zip(onnx_answers, torch_answers, strict=True):
        assert [r.label for r in ours.top] == [r.label for r in theirs.top]
        assert (ours.abstain, ours.urgent) == (theirs.abstain, theirs.urgent)
        for label, prob in theirs.probabilities.items():
            assert ours.probabilities[label] == pytest.approx(prob, abs=1e-4)


def test_more_photos_than_one_micro_batch(exported):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)) for _ in range(19)]
    classifier = OnnxBackend(exported)
    one_by_one = [classifier.predict_batch([image])[0] for image in images]
    together = classifier.predict_batch(images)
    for alone, batched in zip(one_by_one, together, strict=True):
        assert alone.best.label == batched.best.label
        assert alone.best.prob == pytest.approx(batched.best.prob, abs=1e-4)


def test_heatmap_is_grad_cam(exported, real_photo_paths):
    """The class maps give Grad-CAM's heatmap without autograd: compare with the torch one."""
    bundle = load_bundle(exported)
    onnx = OnnxBackend(exported)
    _, height, width = bundle.card.input_size
    for path in real_photo_paths[:4]:
        image = Image.open(path).convert("RGB")
        for label in (None, "acne"):
            index = bundle.card.labels.index(label) if label else None
            want = grad_cam(bundle.model, preprocess(image, bundle.card).unsqueeze(0), index)
            logits, maps = onnx._run(
                preprocess_array(image, bundle.card)[None], ["logits", "class_maps"]
            )
            index = index if index is not None else int(logits[0].argmax())
            cam = Image.fromarray(np.maximum(maps[0, index], 0).astype(np.float32), mode="F")
            got = stretch_to_unit(
                np.asarray(cam.resize((width, height), Image.Resampling.BILINEAR))
            )
            assert np.abs(got - want).max() < 1e-3
        png = onnx.gradcam_png(image)
        overlay = Image.open(io.BytesIO(png))
        assert overlay.format == "PNG" and min(overlay.size) == round(min(image.size) * 0.875)


def test_weights_replaced_after_the_export_are_refused(exported, tmp_path):
    directory = tmp_path / "stale"
    directory.mkdir()
    for name in (ONNX_FILE, "model_card.json", "model.safetensors"):
        (directory / name).write_bytes((exported / name).read_bytes())
    card = read_card(directory)
    torch.manual_seed(99)
    save_bundle(load_bundle(make_bundle(tmp_path / "other", seed=99)).model, card, directory)
    assert "other weights" in onnx_problem(directory)
    with pytest.raises(BundleError, match="other weights"):
        OnnxBackend(directory)


def test_corrupt_or_missing_onnx_is_refused(exported, tmp_path):
    directory = tmp_path / "corrupt"
    directory.mkdir()
    for name in (ONNX_FILE, "model_card.json", "model.safetensors"):
        (directory / name).write_bytes((exported / name).read_bytes())
    data = bytearray((directory / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        OnnxBackend(directory)
    (directory / ONNX_FILE).unlink()
    assert "not found" in onnx_problem(directory)


def test_export_refuses_a_head_that_is_not_pooling_into_a_linear_layer():
    with pytest.raises(BundleError, match="linear"):
        LogitsAndClassMaps(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))

    class Odd(torch.nn.Module):
        """Max pooling: the logits are not the average of the class maps."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)
            self.fc = torch.nn.Linear(8, 5)

        def get_classifier(self):
            return self.fc

        def forward_features(self, x):
            return torch.relu(self.conv(x))

        def forward_head(self, features):
            return self.fc(features.amax(dim=(2, 3)))

    with pytest.raises(BundleError, match="not the average"):
        LogitsAndClassMaps(Odd()).eval().check_class_maps(torch.randn(2, 3, 16, 16))


def test_test_time_flip_answers_a_photo_and_its_mirror_alike(tmp_path, real_photo_paths):
    """With the card's test_time_flip both back-ends average photo and mirror image: a photo and
    its mirror get the same answer (exactly the same input pair), and the back-ends agree."""
    flipped = make_bundle(tmp_path / "flip", seed=4, crop_pct=1.0, test_time_flip=True)
    export_onnx(flipped)
    plain = make_bundle(tmp_path / "plain", seed=4, crop_pct=1.0)
    image = Image.open(real_photo_paths[0]).convert("RGB").resize((64, 64))
    mirror = ImageOps.mirror(image)

    def probabilities(classifier, images):
        return [np.array(list(p.probabilities.values())) for p in classifier.predict_batch(images)]

    torch_flip = probabilities(
        TorchBackend(load_bundle(flipped), inference="fp32"), [image, mirror]
    )
    onnx_flip = probabilities(OnnxBackend(flipped), [image, mirror])
    assert np.abs(torch_flip[0] - torch_flip[1]).max() < 1e-5
    assert np.abs(onnx_flip[0] - onnx_flip[1]).max() < 1e-5
    assert np.abs(torch_flip[0] - onnx_flip[0]).max() < 1e-4
    one_pass = probabilities(TorchBackend(load_bundle(plain), inference="fp32"), [image, mirror])
    assert np.abs(one_pass[0] - one_pass[1]).max() > 1e-4  # the flip is what made them equal
