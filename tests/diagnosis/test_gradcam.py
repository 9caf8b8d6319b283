"""Grad-CAM: which layer it reads, that it leaves the model as it found it, and, on models trained
here from scratch, that the heatmap lands on the evidence for the class."""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image

from diagnosis.heatmap import overlay_png
from diagnosis.serving.torch_gradcam import grad_cam, target_layer

SIZE = 128
RADIUS = 14
RED = np.array([0.9, 0.15, 0.15])
BLUE = np.array([0.15, 0.25, 0.9])
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE]


@pytest.fixture(scope="module", autouse=True)
def _two_threads():
    # The CI boxes have two cores; more threads only add contention. Fixed threads also fix the
    # reduction order, so the trained weights below are the same run after run.
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def tiny_resnet(**kwargs) -> torch.nn.Module:
    # resnet10t at a quarter of its width: the same family and module names, a tenth of the cost.
    return timm.create_model(
        "resnet10t", num_classes=2, channels=(16, 32, 64, 128), stem_width=16, **kwargs
    )


def tiny_mobilenet(**kwargs) -> torch.nn.Module:
    # timm builds MobileNetV2 with its EfficientNet class: conv_head, bn2 and all.
    return timm.create_model("mobilenetv2_035", num_classes=2, **kwargs)


def no_hooks_left(model: torch.nn.Module) -> bool:
    return all(
        not m._forward_hooks
        and not m._forward_pre_hooks
        and not m._backward_hooks
        and not m._backward_pre_hooks
        for m in model.modules()
    )


# --- target_layer ---------------------------------------------------------------------------


def test_target_layer_is_layer4_for_resnets():
    model = tiny_resnet()
    assert target_layer(model) is model.layer4


@pytest.mark.parametrize("arch", ["efficientnet_b0", "mobilenetv2_035"])
def test_target_layer_is_bn2_for_efficientnets_and_mobilenets(arch):
    model = timm.create_model(arch, num_classes=2)
    assert target_layer(model) is model.bn2


def test_target_layer_falls_back_to_last_feature_module():
    # MobileNetV3 has a conv_head but pools before it, so there is no bn2 on a spatial map.
    model = timm.create_model("mobilenetv3_small_050", num_classes=2)
    assert not hasattr(model, "bn2")
    assert target_layer(model) is model.get_submodule(model.feature_info[-1]["module"])


def test_target_layer_names_an_unknown_model():
    class Mystery(torch.nn.Sequential):
        pass

    with pytest.raises(ValueError, match="Mystery"):
        target_layer(Mystery(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()))


# --- grad_cam: contract and hygiene ---------------------------------------------------------


@pytest.fixture(scope="module")
def untrained():
    # A seed under which neither class's map is flat, so comparing maps below means something.
    torch.manual_seed(2)
    model = tiny_resnet().eval()
    # Not square, so a height/width swap shows.
    batch = torch.randn(1, 3, 96, 128)
    return model, batch


@pytest.mark.parametrize("class_index", [0, 1])
def test_grad_cam_is_input_sized_float32_in_unit_range(untrained, class_index):
    model, batch = untrained
    heatmap = grad_cam(model, batch, class_index)
    assert heatmap.shape == (96, 128)
    assert heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all()
    assert heatmap.min() == pytest.approx(0.0) and heatmap.max() == pytest.approx(1.0)


def test_grad_cam_defaults_to_the_top_class(untrained):
    model, batch = untrained
    with torch.no_grad():
        top = int(model(batch).argmax())
    np.testing.assert_array_equal(grad_cam(model, batch), grad_cam(model, batch, top))
    assert not np.array_equal(grad_cam(model, batch, top), grad_cam(model, batch, 1 - top))


def test_grad_cam_rejects_bad_input(untrained):
    model, batch = untrained
    with pytest.raises(ValueError):
        grad_cam(model, batch.repeat(2, 1, 1, 1))
    with pytest.raises(IndexError):
        grad_cam(model, batch, 2)
    assert no_hooks_left(model)


def test_grad_cam_leaves_the_model_as_it_found_it(untrained):
    model, batch = untrained
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    try:
        flags = [p.requires_grad for p in model.parameters()]
        grad_cam(model, batch)
        assert no_hooks_left(model)
        assert model.training is False
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
    finally:
        frozen.requires_grad_(True)


def test_grad_cam_keeps_train_mode():
    torch.manual_seed(3)
    model = tiny_resnet().train()
    grad_cam(model, torch.randn(1, 3, 64, 64))
    assert all(m.training for m in model.modules())
    assert no_hooks_left(model)


def test_grad_cam_works_with_every_parameter_frozen(untrained):
    model, batch = untrained
    expected = grad_cam(model, batch, 0)
    model.requires_grad_(False)
    try:
        np.testing.assert_allclose(grad_cam(model, batch, 0), expected, atol=1e-6)
    finally:
        model.requires_grad_(True)


def test_grad_cam_ignores_outer_inference_mode_and_no_grad(untrained):
    model, batch = untrained
    expected = grad_cam(model, batch, 0)
    with torch.inference_mode():
        inference_batch = batch.clone()  # an inference tensor, as the predictor would make
        inside = grad_cam(model, inference_batch, 0)
    with torch.no_grad():
        no_grad = grad_cam(model, batch, 0)
    np.testing.assert_allclose(inside, expected, atol=1e-6)
    np.testing.assert_allclose(no_grad, expected, atol=1e-6)
    assert no_hooks_left(model)


def test_grad_cam_works_on_a_worker_thread(untrained):
    model, batch = untrained
    expected = grad_cam(model, batch, 0)
    with ThreadPoolExecutor(max_workers=1) as pool:
        on_thread = pool.submit(grad_cam, model, batch, 0).result()
    np.testing.assert_allclose(on_thread, expected, atol=1e-6)


def test_grad_cam_is_all_zeros_when_nothing_is_localised():
    torch.manual_seed(2)
    model = tiny_resnet().eval()
    # A head that ignores the features gives zero gradients, hence a flat map.
    torch.nn.init.zeros_(model.get_classifier().weight)
    heatmap = grad_cam(model, torch.randn(1, 3, 64, 64), 0)
    assert heatmap.shape == (64, 64)
    assert not heatmap.any()


# --- grad_cam points at the evidence --------------------------------------------------------
#
# Every picture holds two discs on a smooth random background: a distractor that is always blue,
# and a second disc that is red for class 1 and blue for class 0. The red disc is the only
# evidence for class 1, and its place is random, so a heatmap for class 1 must find it (and not
# the equally salient blue disc). Class 0's evidence is the absence of red, which has no place,
# so only class 1 is located.


def synthetic(n: int, rng: np.random.Generator, label: int | None = None):
    low = torch.from_numpy(rng.uniform(0.25, 0.75, (n, 3, 5, 5)).astype(np.float32))
    images = F.interpolate(low, size=(SIZE, SIZE), mode="bicubic", align_corners=False).numpy()
    images += rng.normal(0.0, 0.04, images.shape).astype(np.float32)
    labels = rng.integers(0, 2, n) if label is None else np.full(n, label)
    targets = np.empty((n, 2))
    distractors = np.empty((n, 2))
    for i in range(n):
        while True:
            target, distractor = rng.uniform(RADIUS + 2, SIZE - RADIUS - 2, (2, 2))
            if math.dist(target, distractor) >= 4 * RADIUS:
                break
        for centre, colour in ((target, RED if labels[i] else BLUE), (distractor, BLUE)):
            jittered = colour + rng.uniform(-0.08, 0.08, 3)
            images[i][:, disc(centre, RADIUS)] = jittered[:, None]
        targets[i], distractors[i] = target, distractor
    batch = (torch.from_numpy(images).clamp_(0.0, 1.0) - 0.5) / 0.25
    return batch, torch.from_numpy(labels), targets, distractors


def disc(centre: np.ndarray, radius: float) -> np.ndarray:
    return (_YY - centre[0]) ** 2 + (_XX - centre[1]) ** 2 <= radius**2


# output_stride=16 gives an 8x8 map at 128 px, the grid a served 224 px model has at stride 32;
# at stride 32 a 128 px picture leaves a 4x4 map, too coarse to tell near the disc from on it.
FAMILIES = {
    "resnet": (lambda: tiny_resnet(output_stride=16), 40),
    "efficientnet": (lambda: tiny_mobilenet(output_stride=16), 60),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def trained(request):
    build, steps = FAMILIES[request.param]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build()
    # timm's EfficientNet head starts with weights of scale 1/sqrt(num_classes); with two
    # classes that saturates the softmax and a short run never recovers. A zero head learns.
    torch.nn.init.zeros_(model.get_classifier().weight)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(steps):
        batch, labels, _, _ = synthetic(32, rng)
        loss = F.cross_entropy(model(batch), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return request.param, model, rng


def test_trained_model_has_learned_the_task(trained):
    name, model, rng = trained
    batch, labels, _, _ = synthetic(64, np.random.default_rng(100))
    with torch.no_grad():
        accuracy = (model(batch).argmax(dim=1) == labels).float().mean().item()
    # A model that did not learn would make the localisation test meaningless: fail, not skip.
    assert accuracy >= 0.9, f"{name}: accuracy {accuracy:.2f} on fresh images"


def test_heatmap_falls_on_the_evidence(trained):
    name, model, _ = trained
    batch, _, targets, distractors = synthetic(20, np.random.default_rng(200), label=1)
    near, beats_distractor, mass_ratios = [], [], []
    for i in range(len(batch)):
        heatmap = grad_cam(model, batch[i : i + 1], 1)
        peak = np.unravel_index(heatmap.argmax(), heatmap.shape)
        near.append(math.dist(peak, targets[i]) <= 2 * RADIUS)
        beats_distractor.append(math.dist(peak, targets[i]) < math.dist(peak, distractors[i]))
        around = disc(targets[i], 2 * RADIUS)
        mass_share = heatmap[around].sum() / heatmap.sum()
        mass_ratios.append(mass_share / around.mean())
    report = (
        f"{name}: peak near {np.mean(near):.2f}, peak nearer the red disc "
        f"{np.mean(beats_distractor):.2f}, mass/area around it {np.mean(mass_ratios):.2f}"
    )
    assert np.mean(near) >= 0.8, report
    assert np.mean(beats_distractor) >= 0.9, report
    # The disc of twice the radius is 15% of the picture; uniform heat would give a ratio of 1.
    assert np.mean(mass_ratios) >= 2.0, report


# --- overlay_png ----------------------------------------------------------------------------


def decode(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def test_overlay_png_is_a_png_of_the_photo_size():
    photo = Image.new("RGB", (200, 150), (120, 100, 90))
    heatmap = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    image = decode(overlay_png(photo, heatmap))
    assert image.format == "PNG"
    assert image.size == (200, 150)
    assert image.mode == "RGB"


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_overlay_png_accepts_other_photo_modes(mode):
    photo = Image.new("RGB", (40, 30), (10, 200, 30)).convert(mode)
    image = decode(overlay_png(photo, np.zeros((7, 7), dtype=np.float32)))
    assert image.size == (40, 30) and image.mode == "RGB"


def test_overlay_png_colours_hot_red_and_cold_blue():
    photo = Image.new("RGB", (64, 32), (128, 128, 128))
    heatmap = np.zeros((32, 64), dtype=np.float32)
    heatmap[:, 32:] = 1.0
    pixels = np.asarray(decode(overlay_png(photo, heatmap, alpha=1.0))).astype(int)
    cold, hot = pixels[16, 4], pixels[16, 60]
    assert cold[2] > cold[0] and cold[2] > cold[1]
    assert hot[0] > hot[1] and hot[0] > hot[2]


def test_overlay_png_alpha_zero_is_the_photo():
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    heatmap = rng.random((5, 5)).astype(np.float32)
    out = np.asarray(decode(overlay_png(photo, heatmap, alpha=0.0)))
    np.testing.assert_array_equal(out, np.asarray(photo))


def test_overlay_png_rejects_bad_arguments():
    photo = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError):
        overlay_png(photo, np.zeros((4, 4)), alpha=1.5)
    with pytest.raises(ValueError):
        overlay_png(photo, np.zeros((1, 4, 4)))
