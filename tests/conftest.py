"""Shared fixtures: the real photo dataset and tiny model bundles made in the tests.

Until a trained bundle ships, tests use tiny timm models with random weights: they exercise the
real loading, preprocessing, batching and Grad-CAM code, just not a useful classifier.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import DATASET_DIR, make_bundle


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


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


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


@pytest.fixture(scope="session")
def firestore_emulator_host() -> Iterator[str]:
    """One Firestore emulator for the whole session; every store gets its own project in it."""
    from firestore_support import EmulatorMissing, check_installed, running_emulator

    problem = None
    try:
        check_installed()
    except EmulatorMissing as missing:
        problem = str(missing)
    if problem:
        pytest.fail(problem, pytrace=False)  # never a skip: CI must test Firestore
    with running_emulator() as emulator:
        yield emulator.host
