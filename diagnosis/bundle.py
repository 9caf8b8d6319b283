"""Model bundles: a safetensors weights file plus a JSON model card that says how to serve it.

Serving reads everything from the card (architecture, labels, input size, normalisation,
temperature, abstention threshold), so a bundle trained at another size or with other labels
runs without code changes. The card is the one list of the model's labels and their names
(training takes the names of known labels from the bundled card). torch and timm are imported
only where weights are read or written: reading a card, as serving on ONNX Runtime does, needs
neither.

Anything wrong with a bundle stops start-up with a message naming the file and the problem: a bot
that answers from the wrong weights is worse than one that is down.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where weights are read or written, not for the card:
    import torch  # the bot serving model.onnx reads the card and never loads torch

CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.safetensors"
ONNX_FILE = "model.onnx"  # the same weights for ONNX Runtime (training/export.py)
CARD_FORMAT = 1

# Where `make run` looks when SKINCARE_MODEL is not set. The training pipeline writes here.
BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "bundled"


class BundleError(Exception):
    """A bundle that cannot be served; the message names the file and the mismatch."""


@dataclass
class ModelCard:
    architecture: str
    labels: list[str]
    display_names: dict[str, dict[str, str]]  # label -> {"en": ..., "ko": ...}
    input_size: list[int]  # [channels, height, width]
    mean: list[float]
    std: list[float]
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    temperature: float = 1.0
    abstain_threshold: float = 0.5
    other_label: str | None = "other"
    # Labels that mean possible skin cancer; when together they reach urgent_threshold the bot
    # refers the user to a dermatologist whatever the top answer is (chosen on validation).
    malignant_labels: list[str] = field(default_factory=list)
    urgent_threshold: float = 0.2
    # Two tiers of referral, stated in proportion: "a skin cancer is likely" (the strong advice:
    # see a dermatologist within 2 weeks, no self-care) when a malignant label is the top answer
    # or together they reach this threshold; below it, from urgent_threshold up, "a skin cancer
    # can't be ruled out" (a routine check, the benign answer's self-care kept). None: every
    # referral is the strong tier (cards written before the tiers). Chosen on validation.
    cancer_likely_threshold: float | None = None
    # Average the logits of the photo and of its mirror image (test-time augmentation), at twice
    # the compute. Every path that computes a bundle's logits honours it; Grad-CAM explains the
    # photo alone. Off for the bundled model: docs/model-report.md has the trade-off measured.
    test_time_flip: bool = False
    version: str = "0"
    weights_sha256: str = ""
    onnx_sha256: str = ""  # of model.onnx, when the bundle has one
    onnx_weights_sha256: str = ""  # weights_sha256 of the weights model.onnx was exported from
    metrics: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    format: int = CARD_FORMAT

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def display_name(self, label: str, language: str) -> str:
        names = self.display_names.get(label, {})
        return names.get(language) or names.get("en") or label

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path) -> ModelCard:
        known = set(cls.__dataclass_fields__)
        missing = [
            name
            for name in ("architecture", "labels", "display_names", "input_size", "mean", "std")
            if name not in data
        ]
        if missing:
            raise BundleError(f"{source}: the model card lacks {', '.join(missing)}")
        card = cls(**{key: value for key, value in data.items() if key in known})
        card.validate(source)
        return card

    def validate(self, source: Path) -> None:
        problems = []
        if not self.labels or len(set(self.labels)) != len(self.labels):
            problems.append("labels must be a non-empty list without repeats")
        if len(self.input_size) != 3 or any(int(v) <= 0 for v in self.input_size):
            problems.append(f"input_size must be [channels, height, width], not {self.input_size}")
        channels = self.input_size[0] if self.input_size else 0
        if len(self.mean) != channels or len(self.std) != channels:
            problems.append("mean and std need one value per input channel")
        if any(value <= 0 for value in self.std):
            problems.append("std values must be positive")
        if not self.temperature > 0:
            problems.append(f"temperature must be positive, not {self.temperature}")
        if not 0.0 <= self.abstain_threshold <= 1.0:
            problems.append(f"abstain_threshold must be in [0, 1], not {self.abstain_threshold}")
        if not 0.0 < self.crop_pct <= 1.0:
            problems.append(f"crop_pct must be in (0, 1], not {self.crop_pct}")
        if self.other_label is not None and self.other_label not in self.labels:
            problems.append(f"other_label {self.other_label!r} is not one of the labels")
        unknown = [label for label in self.malignant_labels if label not in self.labels]
        if unknown:
            problems.append(f"malignant_labels {unknown} are not among the labels")
        if not 0.0 < self.urgent_threshold <= 1.0:
            problems.append(f"urgent_threshold must be in (0, 1], not {self.urgent_threshold}")
        likely = self.cancer_likely_threshold
        if likely is not None and not self.urgent_threshold <= likely <= 1.0:
            problems.append(
                f"cancer_likely_threshold must be in [urgent_threshold, 1], not {likely}"
            )
        if problems:
            raise BundleError(f"{source}: invalid model card: " + "; ".join(problems))


@dataclass
class Bundle:
    card: ModelCard
    model: torch.nn.Module
    path: Path


def create_model(architecture: str, num_classes: int, pretrained: bool = False) -> torch.nn.Module:
    """A timm model; `pretrained=True` downloads ImageNet weights where the internet allows."""
    import timm  # imported here: timm's import is slow and only model code needs it

    try:
        return timm.create_model(architecture, pretrained=pretrained, num_classes=num_classes)
    except RuntimeError as exc:  # timm's "Unknown model" is a RuntimeError
        raise BundleError(f"unknown architecture {architecture!r}: {exc}") from exc


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_bundle(
    model: torch.nn.Module, card: ModelCard, directory: Path, half: bool = False
) -> Path:
    """Write weights and card; the card records the weights' checksum."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / WEIGHTS_FILE
    state = {
        name: (tensor.half() if half and tensor.is_floating_point() else tensor)
        .detach()
        .cpu()
        .contiguous()
        for name, tensor in model.state_dict().items()
    }
    save_file(state, str(weights), metadata={"architecture": card.architecture})
    card.weights_sha256 = sha256_of(weights)
    write_card(card, directory)
    return directory


def write_card(card: ModelCard, directory: Path) -> None:
    """(Re)write a bundle's card, e.g. to record metrics measured on the saved weights."""
    card.validate(Path(directory) / CARD_FILE)
    (Path(directory) / CARD_FILE).write_text(card.to_json() + "\n", encoding="utf-8")


def read_card(directory: Path) -> ModelCard:
    card_path = Path(directory) / CARD_FILE
    if not card_path.is_file():
        raise BundleError(f"{card_path}: model card not found")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{card_path}: the model card is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{card_path}: the model card must be a JSON object")
    try:
        return ModelCard.from_dict(data, card_path)
    except TypeError as exc:
        raise BundleError(f"{card_path}: invalid model card: {exc}") from exc


def load_bundle(directory: Path | str) -> Bundle:
    """Load and check a bundle; every problem is a BundleError naming the file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"{directory}: model bundle folder not found")
    card = read_card(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{weights}: weights file not found")
    if card.weights_sha256 and sha256_of(weights) != card.weights_sha256:
        raise BundleError(
            f"{weights}: checksum does not match the model card (corrupt or replaced weights)"
        )
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{weights}: cannot read the weights: {exc}") from exc

    model = create_model(card.architecture, card.num_classes)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise BundleError(
            f"{weights}: the weights do not fit {card.architecture} with "
            f"{card.num_classes} labels (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    wrong_shapes = [
        f"{name} {tuple(state[name].shape)} != {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if tuple(state[name].shape) != tuple(tensor.shape)
    ]
    if wrong_shapes:
        raise BundleError(
            f"{weights}: tensor shapes do not match the card ({card.architecture}, "
            f"{card.num_classes} labels): " + "; ".join(wrong_shapes[:3])
        )
    # Half-precision bundles are widened to the model's own dtype for serving.
    model.load_state_dict({name: state[name].to(expected[name].dtype) for name in expected})
    model.eval()
    return Bundle(card=card, model=model, path=directory)
