"""Training data: reading a photo folder, a leak-free split, and torch datasets with augmentation.

The split keeps every near-duplicate `group` on one side (a re-crop of a test photo in the
training set would inflate every figure) and is stratified by label, and it is saved so that
`evaluate` reproduces the published figures from exactly the same test photos.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from diagnosis.bundle import ModelCard
from diagnosis.serving.torch_backend import preprocess

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
SPLITS = ("train", "val", "test")
# DermNet's watermark (logo + "DermNet / All about the skin") sits in this box, as fractions of
# width and height, on every clinical photo (measured on the 448 x 336 images).
WATERMARK_BOX = (0.04, 0.70, 0.30, 0.95)


@dataclass(frozen=True)
class Sample:
    file: str  # relative to the data folder
    label: str
    source: str = ""
    group: str = ""

    @property
    def group_key(self) -> str:
        return self.group or self.file


def read_samples(data_dir: Path) -> list[Sample]:
    """A `manifest.csv` (file,label,source,...,group) or else one folder per label."""
    data_dir = Path(data_dir)
    manifest = data_dir / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        missing = {"file", "label"} - set(rows[0] if rows else {})
        if missing:
            raise ValueError(f"{manifest}: missing columns {', '.join(sorted(missing))}")
        return [
            Sample(row["file"], row["label"], row.get("source", ""), row.get("group", ""))
            for row in rows
        ]
    samples = [
        Sample(str(path.relative_to(data_dir)), path.parent.name)
        for path in sorted(data_dir.glob("*/*"))
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not samples:
        raise ValueError(f"{data_dir}: no manifest.csv and no label folders with images")
    return samples


def split_samples(
    samples: list[Sample], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Sample]]:
    """Stratified by label, grouped by near-duplicate group: no group on two sides."""
    groups: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[sample.group_key].append(sample)
    by_label: dict[str, list[list[Sample]]] = defaultdict(list)
    for members in groups.values():
        # A group is filed under its most common label (the dataset keeps groups label-pure).
        labels = [m.label for m in members]
        by_label[max(set(labels), key=labels.count)].append(members)

    rng = random.Random(seed)
    split: dict[str, list[Sample]] = {name: [] for name in SPLITS}
    for label in sorted(by_label):
        label_groups = sorted(by_label[label], key=lambda g: g[0].group_key)
        rng.shuffle(label_groups)
        total = sum(len(g) for g in label_groups)
        targets = {name: fraction * total for name, fraction in zip(SPLITS, fractions, strict=True)}
        filled = dict.fromkeys(SPLITS, 0)
        # Largest groups first, each to the side furthest below its target share.
        for members in sorted(label_groups, key=len, reverse=True):
            side = max(
                SPLITS, key=lambda name: (targets[name] - filled[name]) / max(targets[name], 1e-9)
            )
            split[side].extend(members)
            filled[side] += len(members)
    for name in SPLITS:
        split[name].sort(key=lambda s: s.file)
    return split


def save_split(split: dict[str, list[Sample]], path: Path, seed: int) -> None:
    payload = {"seed": seed, **{name: [asdict(s) for s in split[name]] for name in SPLITS}}
    Path(path).write_text(json.dumps(payload, indent=1), encoding="utf-8")


def load_split(path: Path) -> dict[str, list[Sample]]:
    payload = json.loads(Path(path).read_text(encoding="utf-8"))
    return {name: [Sample(**row) for row in payload[name]] for name in SPLITS}


class WatermarkEraser:
    """Paint over DermNet's lower-left watermark so it cannot become a shortcut to the label."""

    def __init__(self, probability: float = 0.9, rng: random.Random | None = None):
        self.probability = probability
        self.rng = rng or random.Random()

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.rng.random() >= self.probability:
            return image
        left, top, right, bottom = WATERMARK_BOX
        box = tuple(
            round(v)
            for v in (
                left * image.width,
                top * image.height,
                right * image.width,
                bottom * image.height,
            )
        )
        # The corner's mean colour keeps the skin tone without any of the logo's edges.
        corner = image.crop(box)
        patch = corner.resize((1, 1), Image.Resampling.BOX).resize(corner.size)
        erased = image.copy()
        erased.paste(patch, box)
        return erased


def train_transform(card: ModelCard) -> transforms.Compose:
    """Augmentation for phone photos of skin: framing, orientation, light, focus, occlusion."""
    _, height, width = card.input_size
    return transforms.Compose(
        [
            transforms.RandomResizedCrop((height, width), scale=(0.35, 1.0), ratio=(0.75, 1.33)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.RandomApply([transforms.RandomRotation(30)], p=0.5),
            transforms.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.25, hue=0.03),
            transforms.RandomApply([transforms.GaussianBlur(5, sigma=(0.1, 1.5))], p=0.2),
            transforms.ToTensor(),
            transforms.Normalize(card.mean, card.std),
            transforms.RandomErasing(p=0.3, scale=(0.02, 0.12)),
        ]
    )


def light_train_transform(card: ModelCard) -> transforms.Compose:
    """Milder augmentation (crops of 60-100 %, small rotations, mild colour jitter; no blur, no
    erasing): the bundled model's recipe, which scored best on validation (docs/model-report.md)."""
    _, height, width = card.input_size
    return transforms.Compose(
        [
            transforms.RandomResizedCrop((height, width), scale=(0.6, 1.0), ratio=(0.8, 1.25)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomVerticalFlip(),
            transforms.RandomApply([transforms.RandomRotation(15)], p=0.3),
            transforms.ColorJitter(brightness=0.15, contrast=0.15, saturation=0.1, hue=0.02),
            transforms.ToTensor(),
            transforms.Normalize(card.mean, card.std),
        ]
    )


AUGMENTATIONS = {"standard": train_transform, "light": light_train_transform}


class PhotoDataset(Dataset):
    def __init__(
        self,
        samples: list[Sample],
        data_dir: Path,
        card: ModelCard,
        train: bool,
        erase_watermark: bool = True,
        augmentation: str = "standard",
    ):
        self.samples = samples
        self.data_dir = Path(data_dir)
        self.card = card
        self.label_index = {label: i for i, label in enumerate(card.labels)}
        self.transform = AUGMENTATIONS[augmentation](card) if train else None
        # Only training erases the watermark: evaluation sees the photos as they are.
        self.eraser = WatermarkEraser() if train and erase_watermark else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        with Image.open(self.data_dir / sample.file) as handle:
            image = handle.convert("RGB")
        if self.eraser is not None and sample.source == "dermnet":
            image = self.eraser(image)
        tensor = self.transform(image) if self.transform else preprocess(image, self.card)
        return tensor, self.label_index.get(sample.label, -1)


def class_weights(samples: list[Sample], labels: list[str]) -> torch.Tensor:
    """Inverse-frequency weights, normalised to mean 1, for the loss."""
    counts = np.array([sum(s.label == label for s in samples) for label in labels], float)
    weights = counts.sum() / np.maximum(counts, 1) / len(labels)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def sample_extra(samples: list[Sample], cap: int, seed: int) -> list[Sample]:
    """At most `cap` photos per label, whole near-duplicate groups (lesions) drawn at random:
    HAM10000 is 81 % naevi, and taken as it is it lowered macro-F1 (its README)."""
    rng = random.Random(seed)
    groups: dict[tuple[str, str], list[Sample]] = {}
    for sample in samples:
        groups.setdefault((sample.label, sample.group_key), []).append(sample)
    chosen: list[Sample] = []
    taken: dict[str, int] = {}
    keys = sorted(groups)
    rng.shuffle(keys)
    for label, group in keys:
        if taken.get(label, 0) < cap:
            chosen += groups[(label, group)]
            taken[label] = taken.get(label, 0) + len(groups[(label, group)])
    return sorted(chosen, key=lambda s: s.file)


def extra_training_photos(
    folders: tuple[Path, ...], labels: list[str], cap: int, seed: int
) -> list[tuple[Path, list[Sample]]]:
    """Each extra folder's photos for the TRAINING side only (never val or test, so every figure
    stays comparable): those with one of the model's labels, at most `cap` per label."""
    known = set(labels)
    chosen = []
    for folder in folders:
        samples = [s for s in read_samples(folder) if s.label in known]
        chosen.append((Path(folder), sample_extra(samples, cap, seed)))
    return chosen


def describe_training_data(
    split: dict[str, list[Sample]],
    extra: list[tuple[Path, list[Sample]]],
    cap: int,
    initialisation: str,
    teacher: str | None,
    **photos: int,
) -> dict:
    """The card's `training_data`: where the photos came from and how the model started."""
    sources = ", ".join(f"{folder.name} ({len(samples)})" for folder, samples in extra)
    return {
        "dataset": "skin-photos (shared/datasets/skin-photos): DermNet clinical photos and ISIC "
        "dermoscopic images"
        + (f"; training side only: {sources}, at most {cap} per label each" if extra else ""),
        "photos": {name: len(split[name]) for name in split}
        | {f"train_extra_{folder.name}": len(samples) for folder, samples in extra}
        | photos,
        "initialisation": initialisation,
        "teacher": teacher,
    }
