"""The training configuration and its defaults, apart from the training code (which imports
torch and the data pipeline) so that the command line can show the defaults cheaply."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainConfig:
    data_dir: Path
    out_dir: Path
    # The defaults are the configuration that trains on 2 CPU cores in about half an hour
    # (measured: 30 min 21 s, test macro-F1 0.493; docs/model-report.md): 192 px, the light
    # augmentation, and a 32-minute budget that re-plans the cosine schedule to the epochs that
    # fit (5 of 10 on that machine). On a GPU all 10 epochs fit; the bundled model's GPU recipe
    # is in tools/gpu_originals.sh (224 px, 30 epochs).
    arch: str = "tf_efficientnet_lite0"
    image_size: int = 192
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.02
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    patience: int = 4
    seed: int = 0
    workers: int = 2
    pretrained: bool = False  # timm hub weights (needs the internet)
    init_weights: Path | None = None  # a local weights file to start from
    split_file: Path | None = None  # reuse a saved split instead of making one
    limit_per_class: int | None = None  # small runs: at most this many photos per label and split
    teacher: tuple[Path, ...] = ()  # bundles whose mean soft labels the student also learns from
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    device: str = "auto"
    max_other_confident: float = 0.2
    min_malignant_sensitivity: float = 0.95
    version: str | None = None
    half_bundle: bool = True
    resume: bool = True
    max_minutes: float | None = 32.0  # stop starting epochs after this long, then finish
    augment: str = "light"  # diagnosis.training.data.AUGMENTATIONS: "standard" or "light"
    progress: bool = True
    # "full" trains every layer from ImageNet weights; "cached-tail" (diagnosis/training/
    # cached_tail.py) fine-tunes the last stages of `start_bundle` on cached activations, with
    # that bundle's input size and split.
    recipe: str = "full"
    start_bundle: Path | None = None  # cached-tail: default the bundled model
    tail_from: int = 5  # cached-tail: blocks from this index on (and the head) are trained
    views: int = 4  # cached-tail: augmented views of each training photo, cached once
    extra_data: tuple[Path, ...] = ()  # more photo folders, training side only
    extra_per_label: int = 200  # at most this many photos per label per extra folder
    cache_dir: Path | None = None  # cached-tail: default OUT/cache
