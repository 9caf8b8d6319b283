"""Grad-CAM review of misclassified photos, as the reference study used to see what the model
misreads (blur, hair, tiny or spread-out lesions, the watermark).

    python -m diagnosis review --data DIR [--bundle DIR] [--split test] [--out review.png]

One PNG grid: each tile is a misclassified photo with the heatmap of the model's (wrong) top
answer, captioned with the true label, the answer and its probability.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from diagnosis.bundle import Bundle
from diagnosis.serving.torch_backend import TorchBackend
from diagnosis.training.evaluate import Evaluation

TILE = 224
CAPTION = 34


def misclassified(evaluation: Evaluation, limit: int) -> list[int]:
    """Indexes of wrong answers, most confident first (the most misleading ones)."""
    predicted = evaluation.probs.argmax(axis=1)
    wrong = np.flatnonzero((evaluation.targets >= 0) & (predicted != evaluation.targets))
    order = np.argsort(-evaluation.probs[wrong].max(axis=1))
    return [int(i) for i in wrong[order][:limit]]


def review_grid(
    bundle: Bundle, evaluation: Evaluation, data_dir: Path, limit: int = 24, columns: int = 6
) -> Image.Image:
    backend = TorchBackend(bundle)
    labels = bundle.card.labels
    chosen = misclassified(evaluation, limit)
    rows = max(1, -(-len(chosen) // columns))
    grid = Image.new("RGB", (columns * TILE, rows * (TILE + CAPTION)), "white")
    draw = ImageDraw.Draw(grid)
    for position, index in enumerate(chosen):
        sample = evaluation.samples[index]
        with Image.open(Path(data_dir) / sample.file) as handle:
            photo = handle.convert("RGB")
        heatmap = Image.open(io.BytesIO(backend.gradcam_png(photo))).resize((TILE, TILE))
        x, y = (position % columns) * TILE, (position // columns) * (TILE + CAPTION)
        grid.paste(heatmap, (x, y))
        answer = int(evaluation.probs[index].argmax())
        draw.text(
            (x + 4, y + TILE + 2), f"true: {labels[evaluation.targets[index]]}"[:36], fill="black"
        )
        draw.text(
            (x + 4, y + TILE + 17),
            f"said: {labels[answer]} {evaluation.probs[index, answer]:.0%}"[:36],
            fill="red",
        )
    if not chosen:
        draw.text((10, 10), "no misclassified photos", fill="black")
    return grid
