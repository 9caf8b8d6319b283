"""The cached-tail recipe: fine-tune only the last stages of a trained model, on a CPU.

A full fine-tune spends most of its time in the early, high-resolution stages (on two CPU cores
stem + blocks 0-4 of EfficientNet-Lite0 take about 90 % of a forward pass at 224 px). Those
stages learn generic edges and textures, so the recipe freezes them: it runs each training
photo through them once per augmented view, stores the activations (fp16, under the output
folder), and then trains blocks `tail_from`.. + head + classifier for several epochs on the
stored activations only. It starts from a trained bundle (the bundled model by default) and
keeps that bundle's saved split, so its val and test photos stay those of every earlier figure;
extra photo folders (e.g. HAM10000) go on the training side only, sampled by label.

The result is an ordinary bundle of the same architecture: the frozen weights are copied, the
tail's are the fine-tuned ones, calibrated and exported as `train` does.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from diagnosis.bundle import BUNDLED_MODEL_DIR, load_bundle
from diagnosis.training.calibration import softmax
from diagnosis.training.data import (
    PhotoDataset,
    Sample,
    class_weights,
    describe_training_data,
    extra_training_photos,
    load_split,
    save_split,
)
from diagnosis.training.evaluate import SPLIT_FILE
from diagnosis.training.metrics import compute_metrics
from diagnosis.training.train_config import TrainConfig

log = logging.getLogger(__name__)


@dataclass
class FeatureSet:
    """Frozen-stage activations of some photos (one row per view) and their label indices."""

    features: np.ndarray  # float16 [views, C, H, W], a memory map for the training set
    targets: np.ndarray  # int64 [views]


def check_splittable(model: torch.nn.Module, tail_from: int) -> None:
    for part in ("conv_stem", "bn1", "blocks", "conv_head", "bn2"):
        if not hasattr(model, part):
            raise ValueError(
                f"the cached-tail recipe needs a timm EfficientNet-style model (no `{part}`)"
            )
    if not 0 < tail_from < len(model.blocks):
        raise ValueError(
            f"cached-tail: --tail-from must be between 1 and {len(model.blocks) - 1} for this "
            f"model (it has {len(model.blocks)} blocks), not {tail_from}"
        )


def frozen_forward(model: torch.nn.Module, images: torch.Tensor, tail_from: int) -> torch.Tensor:
    hidden = model.bn1(model.conv_stem(images))
    for block in model.blocks[:tail_from]:
        hidden = block(hidden)
    return hidden


def tail_forward(model: torch.nn.Module, hidden: torch.Tensor, tail_from: int) -> torch.Tensor:
    for block in model.blocks[tail_from:]:
        hidden = block(hidden)
    return model.forward_head(model.bn2(model.conv_head(hidden)))


def tail_parameters(model: torch.nn.Module, tail_from: int) -> list[torch.nn.Parameter]:
    parts = [*model.blocks[tail_from:], model.conv_head, model.bn2, model.get_classifier()]
    return [p for part in parts for p in part.parameters()]


def cache_key(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


@torch.no_grad()
def cache_features(
    model: torch.nn.Module,
    dataset: PhotoDataset,
    views: int,
    tail_from: int,
    path: Path,
    config: TrainConfig,
    desc: str,
) -> FeatureSet:
    """`views` passes over `dataset` through the frozen stages, stored in `path` (.npy files);
    a later run with the same key reads them back instead of computing them again."""
    targets_path = path.with_suffix(".targets.npy")
    if path.is_file() and targets_path.is_file():
        return FeatureSet(np.load(path, mmap_mode="r"), np.load(targets_path))
    path.parent.mkdir(parents=True, exist_ok=True)
    probe = frozen_forward(model, dataset[0][0][None], tail_from)
    total = views * len(dataset)
    partial = path.with_suffix(".partial.npy")
    features = np.lib.format.open_memmap(
        partial, mode="w+", dtype=np.float16, shape=(total, *probe.shape[1:])
    )
    targets = np.empty(total, dtype=np.int64)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        num_workers=config.workers,
        persistent_workers=config.workers > 0 and views > 1,
    )
    row = 0
    with tqdm(total=total, desc=desc, unit="view", disable=not config.progress) as bar:
        for _ in range(views):
            for images, labels in loader:
                hidden = frozen_forward(model, images, tail_from)
                features[row : row + len(labels)] = hidden.numpy().astype(np.float16)
                targets[row : row + len(labels)] = labels.numpy()
                row += len(labels)
                bar.update(len(labels))
    features.flush()
    del features
    np.save(targets_path, targets)
    partial.rename(path)
    return FeatureSet(np.load(path, mmap_mode="r"), targets)


@torch.no_grad()
def tail_logits(model: torch.nn.Module, feature_set: FeatureSet, tail_from: int) -> np.ndarray:
    model.eval()
    outputs = []
    for start in range(0, len(feature_set.targets), 128):
        # A copy: a slice of the read-only memmap would make torch warn about writes.
        rows = np.array(feature_set.features[start : start + 128], dtype=np.float32)
        outputs.append(tail_forward(model, torch.from_numpy(rows), tail_from))
    return torch.cat(outputs).numpy()


def train_tail(
    model: torch.nn.Module,
    train_set: FeatureSet,
    val_set: FeatureSet,
    labels: list[str],
    config: TrainConfig,
) -> tuple[int, float, list[dict]]:
    """Fine-tune the tail on cached activations; the model keeps the best val epoch's weights.

    Batch norm stays in eval mode: its statistics are the start model's, measured on whole
    images of the same photos, and batches of 64 cached views would only estimate them worse.
    """
    tail_from = config.tail_from
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    trainable = tail_parameters(model, tail_from)
    for parameter in trainable:
        parameter.requires_grad_(True)
    train_samples = [Sample("", labels[t]) for t in train_set.targets]
    criterion = torch.nn.CrossEntropyLoss(
        weight=class_weights(train_samples, labels), label_smoothing=config.label_smoothing
    )
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(train_set.targets) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.lr,
        total_steps=steps_per_epoch * config.epochs,
        pct_start=min(0.3, config.warmup_epochs / max(config.epochs, 1)),
    )
    rng = np.random.default_rng(config.seed)
    model.eval()
    start_f1 = compute_metrics(
        softmax(tail_logits(model, val_set, tail_from)), val_set.targets, labels
    )["macro_f1"]
    best = (0, start_f1, {k: v.clone() for k, v in model.state_dict().items()})
    history = [{"epoch": 0, "val_macro_f1": start_f1}]
    log.info("start model: val macro-F1 %.4f", start_f1)
    epochs = tqdm(range(config.epochs), desc="tail epochs", disable=not config.progress)
    for epoch in epochs:
        # Sorted batches of random rows: a memory map reads them in order, fast enough from disk.
        order = rng.permutation(len(train_set.targets))[: steps_per_epoch * config.batch_size]
        running = 0.0
        batches = tqdm(
            order.reshape(steps_per_epoch, -1),
            desc=f"epoch {epoch + 1}",
            leave=False,
            disable=not config.progress,
        )
        for step, rows in enumerate(batches):
            rows = np.sort(rows)
            hidden = torch.from_numpy(np.asarray(train_set.features[rows])).float()
            targets = torch.from_numpy(train_set.targets[rows])
            loss = criterion(tail_forward(model, hidden, tail_from), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 5.0)
            optimizer.step()
            scheduler.step()
            running += loss.item()
            batches.set_postfix(loss=f"{running / (step + 1):.3f}")
        val_f1 = compute_metrics(
            softmax(tail_logits(model, val_set, tail_from)), val_set.targets, labels
        )["macro_f1"]
        history.append(
            {"epoch": epoch + 1, "train_loss": running / steps_per_epoch, "val_macro_f1": val_f1}
        )
        log.info("epoch %d: %s", epoch + 1, history[-1])
        if val_f1 > best[1]:
            best = (epoch + 1, val_f1, {k: v.clone() for k, v in model.state_dict().items()})
        epochs.set_postfix(val_f1=f"{val_f1:.3f}", best=f"{best[1]:.3f}@{best[0]}")
    model.load_state_dict(best[2])
    return best[0], best[1], history


def prepare(config: TrainConfig):
    """The start bundle, its split, the extra training photos, and the cached activations of
    train (+ extras) and val."""
    start_dir = Path(config.start_bundle or BUNDLED_MODEL_DIR)
    bundle = load_bundle(start_dir)
    model, card = bundle.model.float().eval(), bundle.card
    check_splittable(model, config.tail_from)
    split = load_split(config.split_file or start_dir / "split.json")
    if config.limit_per_class:
        from diagnosis.training.train import limit_split

        split = limit_split(split, config.limit_per_class, config.seed)
    cache_dir = Path(config.cache_dir or Path(config.out_dir) / "cache")
    key = cache_key(card.weights_sha256, config.tail_from, config.augment, config.seed)
    torch.manual_seed(config.seed)
    train_parts = [
        (
            PhotoDataset(
                split["train"], config.data_dir, card, train=True, augmentation=config.augment
            ),
            config.data_dir,
        )
    ]
    extra = extra_training_photos(
        config.extra_data, card.labels, config.extra_per_label, config.seed
    )
    for folder, samples in extra:
        train_parts.append(
            (
                PhotoDataset(samples, folder, card, train=True, augmentation=config.augment),
                folder,
            )
        )
    feature_sets = []
    for dataset, folder in train_parts:
        files = cache_key(key, config.views, [s.file for s in dataset.samples])
        feature_sets.append(
            cache_features(
                model,
                dataset,
                config.views,
                config.tail_from,
                cache_dir / f"train-{Path(folder).name}-{files}.npy",
                config,
                f"cache {Path(folder).name}",
            )
        )
    train_set = FeatureSet(
        np.concatenate([np.asarray(f.features) for f in feature_sets])
        if len(feature_sets) > 1
        else feature_sets[0].features,
        np.concatenate([f.targets for f in feature_sets]),
    )
    val_files = cache_key(key, [s.file for s in split["val"]])
    val_set = cache_features(
        model,
        PhotoDataset(split["val"], config.data_dir, card, train=False),
        1,
        config.tail_from,
        cache_dir / f"val-{val_files}.npy",
        config,
        "cache val",
    )
    return bundle, split, extra, train_set, val_set


def train_cached_tail(config: TrainConfig):
    """The recipe end to end: cache, fine-tune the tail, then calibrate, export and measure
    like every bundle (train.finish_bundle). Returns train.TrainResult."""
    from diagnosis.training.train import finish_bundle, seed_everything

    seed_everything(config.seed)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle, split, extra, train_set, val_set = prepare(config)
    model, start_card = bundle.model, bundle.card
    best_epoch, best_f1, history = train_tail(model, train_set, val_set, start_card.labels, config)
    val_logits = tail_logits(model, val_set, config.tail_from)
    # A fresh card from the start bundle's: preprocessing and names carry over; what was
    # measured or chosen for the start model does not.
    card = replace(
        start_card,
        cancer_likely_threshold=None,
        version=config.version or f"{start_card.version}-tail{config.tail_from}",
        metrics={},
        onnx_sha256="",
        onnx_weights_sha256="",
    )
    save_split(split, out_dir / SPLIT_FILE, config.seed)  # the start bundle's, unchanged
    training_data = describe_training_data(
        split,
        extra,
        config.extra_per_label,
        f"{start_card.version} (stem and blocks 0-{config.tail_from - 1} frozen; blocks "
        f"{config.tail_from}+ and the head fine-tuned on {config.views} cached augmented views "
        "per training photo)",
        None,
        train_views=int(len(train_set.targets)),
    )
    return finish_bundle(
        model,
        card,
        val_logits,
        val_set.targets,
        config,
        training_data,
        best_epoch,
        best_f1,
        history,
    )
