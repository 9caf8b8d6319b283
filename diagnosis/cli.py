"""Command line for the diagnosis engine.

    python -m diagnosis predict PHOTO [PHOTO ...] [--json] [--gradcam OUT.png] [--bundle DIR]

Exit codes: 0 every photo was analysed, 1 at least one was refused, 2 usage or model errors.
All photos of one call go through one Predictor, so they are batched like concurrent chats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from diagnosis.analysis import PhotoAnalysis, analyse_photo
from diagnosis.bundle import BUNDLED_MODEL_DIR, BundleError, load_bundle
from diagnosis.intake import ImageRejected, RejectReason
from diagnosis.predictor import Classifier, Predictor

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diagnosis", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="analyse photos with a model bundle")
    predict.add_argument("photos", nargs="+", type=Path, metavar="PHOTO")
    predict.add_argument("--json", action="store_true", help="one JSON object per photo per line")
    predict.add_argument(
        "--gradcam",
        type=Path,
        metavar="OUT.png",
        help="write a Grad-CAM heatmap of the top answer (OUT-<photo>.png for several photos)",
    )
    predict.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="model bundle folder (default: $SKINCARE_MODEL, else the bundled model)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "predict":
        return predict_command(args)
    return EXIT_USAGE


def default_bundle_dir() -> tuple[Path, bool]:
    """The bundle to use and whether the user chose it (then it must exist)."""
    chosen = os.environ.get("SKINCARE_MODEL", "").strip()
    return (Path(chosen), True) if chosen else (BUNDLED_MODEL_DIR, False)


def predict_command(args: argparse.Namespace) -> int:
    bundle_dir, chosen = (args.bundle, True) if args.bundle else default_bundle_dir()
    if not chosen and not bundle_dir.is_dir():
        print(
            f"No trained model is installed (looked in {bundle_dir}). "
            "Train one with `python -m diagnosis train` or set SKINCARE_MODEL / --bundle.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        bundle = load_bundle(bundle_dir)
    except BundleError as exc:
        print(f"Cannot load the model: {exc}", file=sys.stderr)
        return EXIT_USAGE

    classifier = Classifier(bundle)
    results = asyncio.run(_analyse_all(args.photos, classifier))
    refused = False
    for path, analysis in results:
        refused |= analysis.refused
        if args.json:
            print(json.dumps({"file": str(path), **analysis.to_dict()}, ensure_ascii=False))
        else:
            print(_human_report(path, analysis))
        if args.gradcam and analysis.prediction is not None:
            out = _gradcam_path(args.gradcam, path, several=len(args.photos) > 1)
            out.write_bytes(classifier.gradcam_png(analysis.image))
            if not args.json:
                print(f"  Grad-CAM: {out}")
    return EXIT_REFUSED if refused else EXIT_OK


async def _analyse_all(
    photos: list[Path], classifier: Classifier
) -> list[tuple[Path, PhotoAnalysis]]:
    predictor = Predictor(classifier)
    try:
        analyses = await asyncio.gather(*(_analyse_file(path, predictor) for path in photos))
    finally:
        await predictor.close()
    return list(zip(photos, analyses, strict=True))


async def _analyse_file(path: Path, predictor: Predictor) -> PhotoAnalysis:
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return PhotoAnalysis(rejected=ImageRejected(RejectReason.NOT_AN_IMAGE, reason))
    # The CLI is for people checking the model, so it predicts poor photos too and says so.
    return await analyse_photo(data, predictor, predict_poor_photos=True)


def _gradcam_path(out: Path, photo: Path, several: bool) -> Path:
    return out.with_name(f"{out.stem}-{photo.stem}{out.suffix or '.png'}") if several else out


def _human_report(path: Path, analysis: PhotoAnalysis) -> str:
    if analysis.rejected is not None:
        return f"{path}\n  refused ({analysis.rejected.reason}): {analysis.rejected.detail}"
    lines = [str(path)]
    prediction = analysis.prediction
    for rank, item in enumerate(prediction.top, start=1):
        lines.append(f"  {rank}. {item.name_en} ({item.name_ko}) {item.prob * 100:5.1f}%")
    lines.append(
        "  abstain: "
        + ("yes (not confident enough to name a condition)" if prediction.abstain else "no")
    )
    quality = analysis.quality
    verdict = "ok" if quality.ok else "poor: " + ", ".join(quality.reasons)
    measures = ", ".join(f"{key} {value:.3g}" for key, value in quality.measures.items())
    lines.append(f"  quality: {verdict} ({measures})")
    lines.append(f"  model: {prediction.model_version}")
    return "\n".join(lines)
