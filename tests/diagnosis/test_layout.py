"""The diagnosis package's shape: serving never needs torch or the training package.

The serving install (`pip install .`) has no torch, timm or onnx, so a serving module that
imported them at module level would break the bot there; tests/bot/test_runtime.py checks the
same at run time, in a process, for the bot and for `python -m diagnosis predict`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers import REPO_ROOT

PACKAGE = REPO_ROOT / "diagnosis"
TRAINING_EXTRA = ("torch", "torchvision", "timm", "onnx", "safetensors", "matplotlib", "tqdm")
# Loaded only for the torch back-end (SKINCARE_RUNTIME=torch, or a bundle without model.onnx).
TORCH_BACKEND = {"serving/torch_backend.py", "serving/torch_gradcam.py"}


def _serving_modules() -> list[str]:
    return sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "training" not in path.relative_to(PACKAGE).parts
        and str(path.relative_to(PACKAGE)) not in TORCH_BACKEND
    )


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", _serving_modules())
def test_serving_modules_import_nothing_of_training_at_module_level(module):
    imported = _imports(PACKAGE / module, top_level_only=True)
    offenders = sorted(
        name
        for name in imported
        if name.split(".")[0] in TRAINING_EXTRA or name.startswith("diagnosis.training")
    )
    assert not offenders, f"{module} imports {offenders}"


def test_only_the_command_line_reaches_into_training():
    users = sorted(
        module
        for module in _serving_modules()
        if any(name.startswith("diagnosis.training") for name in _imports(PACKAGE / module, False))
    )
    assert users == ["cli.py"]  # the training commands, imported when they run


def test_the_model_card_is_the_only_label_list():
    # Training names the labels from the bundled card; no other file in the package lists them.
    assert not [path for path in PACKAGE.rglob("*.json") if "bundled" not in path.parts]
