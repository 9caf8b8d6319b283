"""Calibrate the photo-quality thresholds on the real skin-photos dataset.

Measures every real photo and degraded copies of it, then prints how often the default
`QualityThresholds` flag the real photos (per reason, per source) and how often they catch each
degradation. The figures quoted at the top of `diagnosis/quality.py` come from this script.

    .venv/bin/python bench/quality_calibration.py [--dataset DIR] [--every N] [--workers N]

Degradations, each re-encoded as JPEG q87 like the dataset so compression artefacts are measured
too. Sizes are relative to a 448 px wide photo and scale with the photo's width, so the 180 px
dermoscopic photos get the same relative damage as the 448 px clinical ones:

- blur r=2/3/5: Gaussian blur of that radius (r=2 is milder than what the check targets);
- dark x0.35/x0.25/x0.2: every pixel's brightness multiplied by the factor;
- bright x2/x2.5/x3: overexposure, brightness multiplied with clipping at white;
- far 25%/35%: the photo shrunk to that share of its width and height and pasted in the middle of
  a neutral background of the same size (grey wall, white table, light and dark grey in turn, with
  slight sensor noise);
- far 25% on beige: the same on a warm beige wall, a known limit of a colour-based subject check.

Real photos are also measured with DermNet's watermark cropped off (the bottom 80 px), because
users' photos carry none and its sharp lettering could make the sharpness check look better on the
dataset than it is.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diagnosis.quality import (  # noqa: E402  (the repository root has to be importable first)
    QualityIssue,
    QualityThresholds,
    assess,
    measure,
)

DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "skin-photos"
REFERENCE_WIDTH = 448
NEUTRAL_BACKGROUNDS = ((150, 150, 146), (234, 232, 226), (200, 200, 198), (90, 90, 92))
BEIGE_BACKGROUND = (222, 200, 170)
WATERMARK_ROWS = 80


def reencode(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=87)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def blurred(radius: float) -> Callable[[Image.Image, int], Image.Image]:
    def apply(image: Image.Image, index: int) -> Image.Image:
        scaled = radius * image.width / REFERENCE_WIDTH
        return reencode(image.filter(ImageFilter.GaussianBlur(scaled)))

    return apply


def exposed(factor: float) -> Callable[[Image.Image, int], Image.Image]:
    def apply(image: Image.Image, index: int) -> Image.Image:
        return reencode(ImageEnhance.Brightness(image).enhance(factor))

    return apply


def far_away(
    share: float, backgrounds: tuple[tuple[int, int, int], ...] = NEUTRAL_BACKGROUNDS
) -> Callable[[Image.Image, int], Image.Image]:
    def apply(image: Image.Image, index: int) -> Image.Image:
        width, height = image.size
        rng = np.random.default_rng(index)
        colour = np.array(backgrounds[index % len(backgrounds)], dtype=np.float32)
        noise = rng.normal(0.0, 3.0, (height, width, 1)).astype(np.float32)
        canvas = Image.fromarray(np.clip(colour + noise, 0, 255).astype(np.uint8))
        small = image.resize(
            (max(1, round(width * share)), max(1, round(height * share))), Image.Resampling.LANCZOS
        )
        canvas.paste(small, ((width - small.width) // 2, (height - small.height) // 2))
        return reencode(canvas)

    return apply


# name -> (degradation, the issue it should raise)
DEGRADATIONS: dict[str, tuple[Callable[[Image.Image, int], Image.Image], QualityIssue]] = {
    "blur r=2": (blurred(2.0), QualityIssue.BLURRY),
    "blur r=3": (blurred(3.0), QualityIssue.BLURRY),
    "blur r=5": (blurred(5.0), QualityIssue.BLURRY),
    "dark x0.35": (exposed(0.35), QualityIssue.TOO_DARK),
    "dark x0.25": (exposed(0.25), QualityIssue.TOO_DARK),
    "dark x0.2": (exposed(0.2), QualityIssue.TOO_DARK),
    "bright x2": (exposed(2.0), QualityIssue.TOO_BRIGHT),
    "bright x2.5": (exposed(2.5), QualityIssue.TOO_BRIGHT),
    "bright x3": (exposed(3.0), QualityIssue.TOO_BRIGHT),
    "far 35%": (far_away(0.35), QualityIssue.SUBJECT_TOO_SMALL),
    "far 25%": (far_away(0.25), QualityIssue.SUBJECT_TOO_SMALL),
    "far 25% on beige": (far_away(0.25, (BEIGE_BACKGROUND,)), QualityIssue.SUBJECT_TOO_SMALL),
}


def variants(image: Image.Image, index: int, source: str) -> Iterator[tuple[str, Image.Image]]:
    yield "real", image
    if source == "dermnet":
        yield (
            "real, watermark cropped",
            image.crop((0, 0, image.width, image.height - WATERMARK_ROWS)),
        )
    for name, (degrade, _) in DEGRADATIONS.items():
        yield name, degrade(image, index)


def measure_photo(job: tuple[int, str, str]) -> list[tuple[str, str, dict[str, float]]]:
    index, path, source = job
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    return [(source, name, measure(variant)) for name, variant in variants(image, index, source)]


def collect(dataset: Path, every: int, workers: int) -> list[tuple[str, str, dict[str, float]]]:
    from tqdm import tqdm

    with (dataset / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    jobs = [(i, str(dataset / row["file"]), row["source"]) for i, row in enumerate(rows)][::every]
    results: list[tuple[str, str, dict[str, float]]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for batch in tqdm(
            pool.map(measure_photo, jobs, chunksize=16),
            total=len(jobs),
            desc="photos",
            file=sys.stderr,
        ):
            results.extend(batch)
    return results


def report(results: list[tuple[str, str, dict[str, float]]], thresholds: QualityThresholds) -> str:
    # (variant, source) -> list of issue tuples; "all" pools both sources.
    verdicts: dict[tuple[str, str], list[tuple[QualityIssue, ...]]] = defaultdict(list)
    for source, name, measures in results:
        issues = assess(measures, thresholds)
        verdicts[(name, source)].append(issues)
        verdicts[(name, "all")].append(issues)
    sources = ("dermnet", "isic", "all")

    def rate(name: str, source: str, issue: QualityIssue | None) -> str:
        found = verdicts.get((name, source))
        if not found:
            return "-"
        hits = sum(1 for issues in found if (issues if issue is None else issue in issues))
        return f"{100.0 * hits / len(found):.1f}% ({hits}/{len(found)})"

    lines = [f"thresholds: {thresholds}", "", "Real photos flagged (lower is better)"]
    header = f"  {'variant':<24} {'reason':<18}" + "".join(f" {s:>22}" for s in sources)
    lines.append(header)
    for name in ("real", "real, watermark cropped"):
        for issue in (*QualityIssue, None):
            label = "any" if issue is None else str(issue)
            cells = "".join(f" {rate(name, s, issue):>22}" for s in sources)
            lines.append(f"  {name:<24} {label:<18}{cells}")
    lines += ["", "Degraded copies caught (higher is better): the expected reason, then any reason"]
    lines.append(header)
    for name, (_, expected) in DEGRADATIONS.items():
        for issue, label in ((expected, str(expected)), (None, "any")):
            cells = "".join(f" {rate(name, s, issue):>22}" for s in sources)
            lines.append(f"  {name:<24} {label:<18}{cells}")

    lines += ["", "Real photos: measure percentiles (1, 5, 50, 95, 99)"]
    for source in ("dermnet", "isic"):
        for key in next(m for _, _, m in results).keys():
            values = [m[key] for s, n, m in results if s == source and n == "real"]
            if values:
                pct = np.percentile(values, [1, 5, 50, 95, 99])
                lines.append(f"  {source:<8} {key:<17}" + " ".join(f"{v:8.3f}" for v in pct))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--every", type=int, default=1, help="measure every Nth photo only")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    if not (args.dataset / "manifest.csv").is_file():
        parser.error(f"{args.dataset} has no manifest.csv (the skin-photos dataset)")
    results = collect(args.dataset, args.every, args.workers)
    print(report(results, QualityThresholds()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
