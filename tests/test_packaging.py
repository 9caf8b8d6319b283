"""What a plain (non-editable) `pip install .` carries: the serving install must work from it."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "package, folder",
    [("bot", "templates"), ("diagnosis", "bundled"), ("knowledge", "content")],
)
def test_every_data_file_the_code_reads_is_package_data(package, folder):
    patterns = PROJECT["tool"]["setuptools"]["package-data"][package]
    files = [p for p in (ROOT / package / folder).rglob("*") if p.is_file()]
    assert files
    missed = [
        str(path.relative_to(ROOT))
        for path in files
        if "__pycache__" not in path.parts
        and not path.name.startswith(".")
        and not any(
            fnmatch.fnmatch(str(path.relative_to(ROOT / package)), pattern)
            and len(path.relative_to(ROOT / package).parts) == len(Path(pattern).parts)
            for pattern in patterns
        )
    ]
    assert not missed, f"not in [tool.setuptools.package-data] {package}: {missed}"


def test_the_serving_install_has_no_torch():
    names = " ".join(PROJECT["project"]["dependencies"]).lower()
    for heavy in ("torch", "timm", "matplotlib"):
        assert heavy not in names
    assert "onnxruntime" in names
    assert any("torch" in dep for dep in PROJECT["project"]["optional-dependencies"]["train"])
