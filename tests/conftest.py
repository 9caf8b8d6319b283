"""Shared fixtures: the real photo dataset and tiny model bundles made in the tests.

Until a trained bundle ships, tests use tiny timm models with random weights: they exercise the
real loading, preprocessing, batching and Grad-CAM code, just not a useful classifier.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from diagnosis.bundle import ModelCard, create_model, save_bundle

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASET_DIR = REPO_ROOT.parent / "shared" / "datasets" / "skin-photos"

LABELS = [
    "acne",
    "atopic_dermatitis",
    "basal_cell_carcinoma",
    "benign_keratosis",
    "eczema",
    "fungal_infection",
    "melanocytic_nevus",
    "melanoma",
    "other",
    "psoriasis_lichen_planus",
    "seborrheic_keratosis_benign_tumor",
    "viral_infection",
]


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    if not (DATASET_DIR / "manifest.csv").is_file():
        pytest.skip(f"the shared photo dataset is not at {DATASET_DIR}")
    return DATASET_DIR


@pytest.fixture(scope="session")
def manifest_rows(dataset_dir: Path) -> list[dict[str, str]]:
    with (dataset_dir / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="session")
def real_photo_paths(dataset_dir: Path, manifest_rows) -> list[Path]:
    """A fixed sample of real photos from both sources (clinical and dermoscopic)."""
    by_source: dict[str, list[str]] = {}
    for row in sorted(manifest_rows, key=lambda r: r["file"]):
        by_source.setdefault(row["source"], []).append(row["file"])
    sample = []
    for files in by_source.values():
        sample += files[:: max(1, len(files) // 4)][:4]
    return [dataset_dir / name for name in sample]


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


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


def image_bytes(image: Image.Image, fmt: str = "PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


@pytest.fixture
async def aiohttp_client_factory():
    """A real aiohttp server on a free local port, and a client for it."""
    from aiohttp.test_utils import TestClient, TestServer

    clients = []

    async def make(app):
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
