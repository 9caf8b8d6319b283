"""Command line for the diagnosis engine.

    python -m diagnosis predict PHOTO [PHOTO ...] [--json] [--gradcam OUT.png] [--bundle DIR]

Exit codes: 0 every photo was analysed, 1 at least one was refused, 2 usage or model errors.
`predict` serves the model as the bot does (`ServingConfig.from_env`, ONNX Runtime unless the
bundle has no model.onnx or torch is asked for), and all photos of one call go through one
Predictor, so they are batched like concurrent chats. `train`, `evaluate`, `export-onnx`,
`review` and `screening` (the urgent-referral and "I can't tell" points, chosen on val:
diagnosis/training/screening.py) need the training extra (pip install '.[train]'); they import
it only when run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from diagnosis.analysis import PhotoAnalysis, analyse_photo
from diagnosis.bundle import BundleError, load_bundle
from diagnosis.config import ServingConfig
from diagnosis.intake import ImageRejected, RejectReason
from diagnosis.serving.batcher import Predictor
from diagnosis.serving.loader import load_backend
from envconfig import SettingsError

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# What the [train] extra adds; a training command without them says how to install them.
TRAINING_MODULES = frozenset(
    {"torch", "torchvision", "timm", "onnx", "safetensors", "matplotlib", "tqdm"}
)


def build_parser() -> argparse.ArgumentParser:
    from diagnosis.training.train_config import TrainConfig  # torch-free: defaults for --help

    # TrainConfig's defaults, for --help; the folders are given on the command line.
    TRAIN_DEFAULTS = TrainConfig(data_dir=Path("."), out_dir=Path("."))  # noqa: N806
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
    train = commands.add_parser("train", help="train a model bundle on a photo folder")
    train.add_argument(
        "--data", type=Path, required=True, help="manifest.csv folder or label folders"
    )
    train.add_argument("--arch", help=f"timm architecture (default {TRAIN_DEFAULTS.arch})")
    train.add_argument("--out", type=Path, required=True, metavar="BUNDLE_DIR")
    # Defaults come from TrainConfig (shown in --help), so that there is one set of them.
    for flag, kind, what in (
        ("--epochs", int, "epochs planned"),
        ("--image-size", int, "input size in pixels"),
        ("--batch-size", int, "photos per step"),
        ("--lr", float, "peak learning rate"),
        ("--weight-decay", float, "AdamW weight decay"),
        ("--patience", int, "early stopping, in epochs without a val macro-F1 gain"),
        ("--seed", int, "random seed"),
        ("--workers", int, "data loading processes"),
        ("--max-minutes", float, "stop starting epochs after this long; 0: no time budget"),
        ("--views", int, "cached-tail: augmented views cached per training photo"),
        ("--tail-from", int, "cached-tail: first block fine-tuned (earlier ones frozen)"),
        ("--extra-per-label", int, "most photos per label from each --extra folder"),
    ):
        default = getattr(TRAIN_DEFAULTS, flag[2:].replace("-", "_"))
        train.add_argument(flag, type=kind, help=f"{what} (default {default})")
    train.add_argument("--pretrained", action="store_true", help="timm hub ImageNet weights")
    train.add_argument("--init-weights", type=Path, help="start from a local weights file")
    train.add_argument("--split", type=Path, dest="split_file", help="reuse a saved split.json")
    train.add_argument("--limit-per-class", type=int, help="small runs: photos per label/split")
    train.add_argument(
        "--teacher",
        type=Path,
        action="append",
        metavar="BUNDLE",
        help="distil from this bundle's soft labels (repeatable: an ensemble's mean)",
    )
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--version", help="model version for the card")
    train.add_argument("--full-precision", action="store_true", help="save fp32 weights")
    train.add_argument("--no-resume", action="store_true", help="ignore a checkpoint in --out")
    train.add_argument(
        "--augment",
        choices=("standard", "light"),
        help=f"augmentation recipe (default {TRAIN_DEFAULTS.augment})",
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bars (for logs)")
    train.add_argument(
        "--recipe",
        choices=("full", "cached-tail"),
        help="full: every layer from ImageNet weights; cached-tail: fine-tune the last stages of "
        "--start-bundle on cached activations, a CPU's recipe "
        f"(default {TRAIN_DEFAULTS.recipe})",
    )
    train.add_argument(
        "--start-bundle", type=Path, help="cached-tail: the bundle to start from (default bundled)"
    )
    train.add_argument(
        "--extra",
        type=Path,
        action="append",
        dest="extra_data",
        metavar="DIR",
        help="another photo folder for the training side only, sampled by label and "
        "lesion (repeatable)",
    )
    train.add_argument(
        "--cache-dir", type=Path, help="cached-tail: activations (default OUT/cache)"
    )
    evaluate = commands.add_parser("evaluate", help="figures of a bundle on a photo folder")
    evaluate.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="model bundle folder (default: $SKINCARE_MODEL, else the bundled model)",
    )
    evaluate.add_argument(
        "--data", type=Path, required=True, help="manifest.csv folder or label folders"
    )
    evaluate.add_argument(
        "--split",
        default="test",
        choices=["train", "val", "test", "all"],
        help="which part of the bundle's saved split (default test); all: every photo",
    )
    evaluate.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for metrics.json and the figures (default: evaluation/BUNDLE_NAME)",
    )
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--workers", type=int, default=2)
    export = commands.add_parser(
        "export-onnx", help="add model.onnx to a bundle (what the bot serves by default)"
    )
    export.add_argument("--bundle", type=Path, default=None, help="default: the bundled model")
    review = commands.add_parser("review", help="Grad-CAM grid of misclassified photos")
    review.add_argument("--bundle", type=Path, default=None, help="default: the bundled model")
    review.add_argument("--data", type=Path, required=True)
    review.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    review.add_argument("--limit", type=int, default=24, help="most photos in the grid")
    review.add_argument("--out", type=Path, default=Path("review.png"))
    screening = commands.add_parser(
        "screening", help="choose the urgent-referral and abstention points on val, report test"
    )
    screening.add_argument("--bundle", type=Path, default=None, help="default: the bundled model")
    screening.add_argument("--data", type=Path, required=True)
    screening.add_argument(
        "--figures", type=Path, default=Path("docs/figures"), help="folder for the PNG figures"
    )
    screening.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/skincare-screening-logits.npz"),
        help="val/test logits are kept here and reused while the model is the same",
    )
    screening.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    screening.add_argument(
        "--write", action="store_true", help="store the chosen thresholds in the model card"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.command == "predict":
        return predict_command(args)
    try:
        return training_command(args)
    except SettingsError as exc:  # SKINCARE_MODEL and the like, read for the default bundle
        print(f"Cannot {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        if exc.name not in TRAINING_MODULES:
            raise
        print(
            f"`{args.command}` needs the training extra ({exc.name} is not installed): "
            "pip install '.[train]'",
            file=sys.stderr,
        )
        return EXIT_USAGE


def training_command(args: argparse.Namespace) -> int:
    if args.command == "train":
        return train_command(args)
    if args.command == "evaluate":
        return evaluate_command(args)
    if args.command == "review":
        return review_command(args)
    if args.command == "export-onnx":
        return export_command(args)
    if args.command == "screening":
        return screening_command(args)
    return EXIT_USAGE


def export_command(args: argparse.Namespace) -> int:
    from diagnosis.training.export import export_onnx

    try:
        path = export_onnx(args.bundle or default_bundle_dir())
    except BundleError as exc:
        print(f"Cannot export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB); the model card records it")
    return EXIT_OK


def train_command(args: argparse.Namespace) -> int:
    from diagnosis.training.train import train
    from diagnosis.training.train_config import TrainConfig

    options = {
        key: value
        for key, value in vars(args).items()
        if key in TrainConfig.__dataclass_fields__ and value is not None
    }
    config = TrainConfig(
        data_dir=args.data,
        out_dir=args.out,
        half_bundle=not args.full_precision,
        resume=not args.no_resume,
        progress=not args.no_progress,
        **{k: v for k, v in options.items() if k not in ("data_dir", "out_dir")},
    )
    config.extra_data, config.teacher = tuple(config.extra_data), tuple(config.teacher)
    if config.recipe == "cached-tail":
        from diagnosis.training.cached_tail import train_cached_tail

        try:
            result = train_cached_tail(config)
        except (BundleError, ValueError, FileNotFoundError) as exc:
            print(f"Cannot train: {exc}", file=sys.stderr)
            return EXIT_USAGE
    else:
        result = train(config)
    metrics = result.test_metrics
    print(
        f"bundle: {result.bundle_dir} (best epoch {result.best_epoch}, "
        f"val macro-F1 {result.val_macro_f1:.3f})\n"
        f"test: macro-F1 {metrics['macro_f1']:.3f}, accuracy {metrics['accuracy']:.3f}, "
        f"top-3 {metrics['top3']:.3f}, ECE {metrics['ece']:.3f}"
    )
    return EXIT_OK


def evaluate_command(args: argparse.Namespace) -> int:
    from diagnosis.training.evaluate import (
        evaluate_bundle,
        format_report,
        save_figures,
        summary_json,
    )

    bundle_dir = args.bundle or default_bundle_dir()
    try:
        bundle = load_bundle(bundle_dir)
        evaluation = evaluate_bundle(
            bundle, args.data, args.split, progress=not args.json, workers=args.workers
        )
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"Cannot evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out_dir = args.out or Path("evaluation") / bundle_dir.resolve().name
    figures = save_figures(evaluation, bundle.card.labels, out_dir)
    (out_dir / "metrics.json").write_text(summary_json(evaluation.metrics) + "\n", encoding="utf-8")
    if args.json:
        print(summary_json(evaluation.metrics))
    else:
        print(format_report(evaluation.metrics))
        print(f"  saved: {out_dir / 'metrics.json'}, " + ", ".join(str(p) for p in figures))
    return EXIT_OK


def review_command(args: argparse.Namespace) -> int:
    from diagnosis.training.evaluate import evaluate_bundle
    from diagnosis.training.review import review_grid

    try:
        bundle = load_bundle(args.bundle or default_bundle_dir())
        evaluation = evaluate_bundle(bundle, args.data, args.split)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"Cannot review: {exc}", file=sys.stderr)
        return EXIT_USAGE
    review_grid(bundle, evaluation, args.data, limit=args.limit).save(args.out)
    print(f"saved {args.out}")
    return EXIT_OK


def screening_command(args: argparse.Namespace) -> int:
    from diagnosis.bundle import read_card, write_card
    from diagnosis.training.screening import (
        analyse,
        format_report,
        save_figures,
        split_probabilities,
        store_in_card,
    )

    bundle_dir = args.bundle or default_bundle_dir()
    try:
        card = read_card(bundle_dir)
        data = split_probabilities(bundle_dir, args.data, card, args.cache)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"Cannot screen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = analyse(card, data)
    print(format_report(card, out))
    figures = save_figures(card, data, out, args.figures)
    print("saved " + ", ".join(str(p) for p in figures))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float) + "\n", encoding="utf-8")
    if args.write:
        store_in_card(card, out)
        write_card(card, bundle_dir)
        print(f"wrote {bundle_dir / 'model_card.json'} (weights and model.onnx untouched)")
    return EXIT_OK


def default_bundle_dir() -> Path:
    """The bundle the training commands use without --bundle: the one the bot would serve."""
    return ServingConfig.from_env().model_path


def predict_command(args: argparse.Namespace) -> int:
    try:
        config = ServingConfig.from_env()
    except SettingsError as exc:
        print(f"Cannot load the model: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.bundle:
        config = replace(config, model_path=args.bundle, model_explicit=True)
    if not config.model_path.is_dir():
        if config.model_explicit:
            print(
                f"Cannot load the model: {config.model_path} is not a model bundle folder",
                file=sys.stderr,
            )
        else:
            print(
                f"No trained model is installed (looked in {config.model_path}). "
                "Train one with `python -m diagnosis train` or set SKINCARE_MODEL / --bundle.",
                file=sys.stderr,
            )
        return EXIT_USAGE
    try:
        backend = load_backend(config)
    except (BundleError, SettingsError) as exc:
        print(f"Cannot load the model: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = asyncio.run(
        _analyse_all(args.photos, Predictor(backend, config.max_batch, config.batch_wait_ms))
    )
    refused = False
    for path, analysis in results:
        refused |= analysis.refused
        if args.json:
            print(json.dumps({"file": str(path), **analysis.to_dict()}, ensure_ascii=False))
        else:
            print(_human_report(path, analysis))
        if args.gradcam and analysis.prediction is not None:
            out = _gradcam_path(args.gradcam, path, several=len(args.photos) > 1)
            out.write_bytes(backend.gradcam_png(analysis.image))
            if not args.json:
                print(f"  Grad-CAM: {out}")
    return EXIT_REFUSED if refused else EXIT_OK


async def _analyse_all(
    photos: list[Path], predictor: Predictor
) -> list[tuple[Path, PhotoAnalysis]]:
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
    if prediction.urgent:
        lines.append("  urgent: yes (skin cancer is among the likely answers: see a dermatologist)")
    quality = analysis.quality
    verdict = "ok" if quality.ok else "poor: " + ", ".join(quality.reasons)
    measures = ", ".join(f"{key} {value:.3g}" for key, value in quality.measures.items())
    lines.append(f"  quality: {verdict} ({measures})")
    lines.append(f"  model: {prediction.model_version}")
    return "\n".join(lines)
