"""Helpers shared by the tests: paths, the model's labels, tiny bundles made in the tests.

Imported as `from helpers import ...` (pytest puts tests/ on the path, see pyproject.toml).
Fixtures live in conftest.py; plain functions and constants live here, because every
conftest.py is imported under the same module name and cannot be imported from reliably.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch
from PIL import Image

from diagnosis.bundle import BUNDLED_MODEL_DIR, ModelCard, create_model, read_card, save_bundle

REPO_ROOT = Path(__file__).resolve().parent.parent
# SKINCARE_TEST_DATASET: for runs from a copy of the tree elsewhere (the mutation runs).
DATASET_DIR = Path(
    os.environ.get("SKINCARE_TEST_DATASET")
    or REPO_ROOT.parent / "shared" / "datasets" / "skin-photos"
)

# The model's labels, from the one list the project keeps of them: the bundled model's card.
LABELS = list(read_card(BUNDLED_MODEL_DIR).labels)


def make_card(**overrides) -> ModelCard:
    values = dict(
        architecture="test_efficientnet",
        labels=list(LABELS),
        display_names={
            label: {"en": label.replace("_", " ").title(), "ko": f"한국어 {label}"}
            for label in LABELS
        },
        input_size=[3, 64, 64],
        mean=[0.5, 0.5, 0.5],
        std=[0.5, 0.5, 0.5],
        temperature=1.0,
        abstain_threshold=0.0,
        malignant_labels=["basal_cell_carcinoma", "melanoma"],
        urgent_threshold=0.3,
        version="test-0",
    )
    values.update(overrides)
    return ModelCard(**values)


def make_bundle(directory: Path, seed: int = 0, half: bool = False, **card_overrides) -> Path:
    card = make_card(**card_overrides)
    torch.manual_seed(seed)
    model = create_model(card.architecture, card.num_classes)
    return save_bundle(model, card, directory, half=half)


def image_bytes(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()
