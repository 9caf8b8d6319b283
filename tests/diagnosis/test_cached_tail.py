"""The cached-tail recipe: the frozen/tail split of the network, sampling of extra photo folders,
and a short real run through the command line (a few photos, one view, one epoch)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diagnosis.bundle import BUNDLED_MODEL_DIR, load_bundle
from diagnosis.cli import EXIT_OK, EXIT_USAGE, main
from diagnosis.serving.onnx_backend import onnx_problem
from diagnosis.training.cached_tail import check_splittable, frozen_forward, tail_forward
from diagnosis.training.data import Sample, load_split, sample_extra

TAIL_FROM = 5


@pytest.fixture(scope="module")
def start_bundle():
    return load_bundle(BUNDLED_MODEL_DIR)


def test_frozen_stages_then_tail_is_the_whole_network(start_bundle):
    model = start_bundle.model.float().eval()
    images = torch.randn(2, *start_bundle.card.input_size)
    with torch.no_grad():
        whole = model(images)
        split = tail_forward(model, frozen_forward(model, images, TAIL_FROM), TAIL_FROM)
    assert torch.allclose(whole, split, atol=1e-4)


def test_only_efficientnet_style_models_can_be_split():
    with pytest.raises(ValueError, match="conv_stem"):
        check_splittable(torch.nn.Linear(3, 2), TAIL_FROM)


def test_extra_photos_are_capped_per_label_in_whole_groups():
    samples = [Sample(f"nv/{i}.jpg", "melanocytic_nevus", group=f"L{i // 2}") for i in range(40)]
    samples += [Sample(f"mel/{i}.jpg", "melanoma", group=f"M{i}") for i in range(5)]
    chosen = sample_extra(samples, cap=7, seed=0)
    naevi = [s for s in chosen if s.label == "melanocytic_nevus"]
    assert len(naevi) == 8  # four whole lesions: the cap is reached inside the fourth
    assert {s.group for s in naevi} == {f"L{int(s.file[3:-4]) // 2}" for s in naevi}
    assert sum(s.label == "melanoma" for s in chosen) == 5  # under the cap: all of them
    assert sample_extra(samples, cap=7, seed=0) == chosen  # seeded


@pytest.fixture(scope="module")
def tail_run(dataset_dir, tmp_path_factory):
    extra = dataset_dir.parent / "msld-viral-rashes"
    if not (extra / "manifest.csv").is_file():
        pytest.skip(f"no extra photo folder at {extra}")
    out = tmp_path_factory.mktemp("tail") / "bundle"
    argv = [
        "train",
        "--recipe",
        "cached-tail",
        "--data",
        str(dataset_dir),
        "--out",
        str(out),
        "--extra",
        str(extra),
        "--extra-per-label",
        "3",
        "--limit-per-class",
        "2",
        "--views",
        "1",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--version",
        "tail-test",
        "--no-progress",
    ]
    code = main(argv)
    return code, out


def test_the_command_line_writes_a_servable_bundle(tail_run, capsys):
    code, out = tail_run
    assert code == EXIT_OK
    card = json.loads((out / "model_card.json").read_text())
    assert card["version"] == "tail-test" and card["temperature"] > 0
    assert card["cancer_likely_threshold"] is None  # the start model's was not measured here
    assert card["training_data"]["best_epoch"] in (0, 1)
    assert "msld-viral-rashes" in card["training_data"]["dataset"]
    assert card["training_data"]["photos"]["train_views"] >= 12 * 2
    assert set(card["metrics"]) >= {"macro_f1", "top3", "ece", "malignant_sensitivity"}
    assert onnx_problem(out) is None
    assert (out / "cache").is_dir()


def test_the_start_bundles_split_and_frozen_weights_are_kept(tail_run):
    _, out = tail_run
    start_split = load_split(BUNDLED_MODEL_DIR / "split.json")
    split = load_split(out / "split.json")
    for name in ("val", "test"):
        assert split[name] and set(split[name]) <= set(start_split[name])
    start = load_file(str(BUNDLED_MODEL_DIR / "model.safetensors"))
    tuned = load_file(str(out / "model.safetensors"))
    frozen = [k for k in start if k.startswith(("conv_stem", "bn1", "blocks.0.", "blocks.4."))]
    assert frozen and all(torch.equal(start[k], tuned[k]) for k in frozen)
    if json.loads((out / "model_card.json").read_text())["training_data"]["best_epoch"] == 1:
        assert not np.allclose(start["classifier.weight"], tuned["classifier.weight"])


def test_a_bundle_that_is_not_efficientnet_is_refused_with_the_reason(
    dataset_dir, tmp_path, tiny_bundle, capsys
):
    code = main(
        [
            "train",
            "--recipe",
            "cached-tail",
            "--start-bundle",
            str(tiny_bundle),
            "--data",
            str(dataset_dir),
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    # The tiny test network has 5 blocks: the default tail (blocks 5 on) would be empty.
    assert code == EXIT_USAGE and "--tail-from must be between 1 and 4" in err
