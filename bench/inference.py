"""Inference speed: a naive loop against the optimised Predictor, side by side in one run.

    python bench/inference.py [--seconds 8] [--models bundled,resnet50] [--concurrency 1,4,16]

--models takes "bundled", timm architecture names (random weights, the bundled model's input
size) and trained bundle folders (their own weights, input size and model.onnx).

For each model: the naive loop (eager fp32, NCHW, batch 1, one request at a time: preprocess,
forward, softmax) and the Predictor as the bot runs it by default (ONNX Runtime, fp32, the
bundle's model.onnx; dynamic batching of concurrent requests, up to 16 a pass) under 1, 4 and 16
concurrent requests, each a closed loop (a client sends its next photo when its answer arrives);
then, at the highest concurrency, the torch back-end (SKINCARE_RUNTIME=torch): fp32 frozen
channels-last graph, and bf16 with fp32 rechecks where the CPU has native bf16; for the models
in --int8 (default ResNet-50) also ONNX Runtime on the model quantised to int8 (static,
per-channel, calibrated on 32 photos): what int8 would buy, never served (it changes answers).
Inputs are decoded real photos from the shared dataset, so preprocessing (resize, crop,
normalise) is in every figure, as in the bot.

ResNet-50 (timm `resnet50`, random weights: speed does not depend on them; exported to ONNX in a
temporary folder) runs bf16 without the fp32 recheck: its random outputs are all close calls,
which says nothing about a trained model. For the bundled model the recheck is on, as it would
be served with SKINCARE_INFERENCE=auto. The machine may be shared: the ratios, measured within
one run, are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis.bundle import (  # noqa: E402
    BUNDLED_MODEL_DIR,
    ONNX_FILE,
    WEIGHTS_FILE,
    Bundle,
    create_model,
    load_bundle,
    read_card,
    save_bundle,
    sha256_of,
    write_card,
)
from diagnosis.serving.batcher import Predictor  # noqa: E402
from diagnosis.serving.onnx_backend import OnnxBackend  # noqa: E402
from diagnosis.serving.preprocess import preprocess_array  # noqa: E402
from diagnosis.serving.torch_backend import (  # noqa: E402
    RECHECK_MARGIN,
    TorchBackend,
    configure_threads,
    cpu_has_native_bf16,
    preprocess,
)
from diagnosis.training.export import export_onnx  # noqa: E402

DATASET = ROOT.parent / "shared/datasets/skin-photos"


@dataclasses.dataclass
class Run:
    name: str
    images_per_s: float
    latencies: list[float]
    batches: int | None = None
    rechecked: float | None = None

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def load_photos(count: int, seed: int = 0) -> list[Image.Image]:
    paths = sorted(DATASET.rglob("*.jpg"))
    chosen = random.Random(seed).sample(paths, count)
    return [Image.open(path).convert("RGB") for path in chosen]


def model_bundle(name: str) -> tuple[Bundle, float]:
    """The bundle to measure and the recheck margin it is served with."""
    if Path(name).is_dir():  # a trained bundle folder: its own weights, input size and ONNX
        return load_bundle(Path(name)), RECHECK_MARGIN
    bundle = load_bundle(BUNDLED_MODEL_DIR)
    if name == "bundled":
        return bundle, RECHECK_MARGIN
    torch.manual_seed(0)
    # One pass per photo, as the reference study's ResNet-50 (no test-time flip).
    card = dataclasses.replace(bundle.card, architecture=name, test_time_flip=False)
    return Bundle(card, create_model(name, card.num_classes).eval(), bundle.path), 0.0


def naive_loop(bundle: Bundle, photos: list[Image.Image], seconds: float) -> Run:
    model = copy.deepcopy(bundle.model).eval()  # as loaded: NCHW, fp32, eager
    latencies = []
    with torch.inference_mode():
        model(preprocess(photos[0], bundle.card).unsqueeze(0))  # first-call set-up
        started = time.perf_counter()
        while time.perf_counter() - started < seconds or len(latencies) < 3:
            photo = photos[len(latencies) % len(photos)]
            t0 = time.perf_counter()
            tensor = preprocess(photo, bundle.card).unsqueeze(0)
            logits = model(tensor)
            if bundle.card.test_time_flip:  # the same answer as served: photo and mirror
                logits = (logits + model(tensor.flip(-1))) / 2
            torch.softmax(logits / bundle.card.temperature, dim=1)
            latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    return Run("naive loop (fp32, batch 1)", len(latencies) / elapsed, latencies)


async def predictor_run(
    predictor: Predictor, photos: list[Image.Image], clients: int, seconds: float, name: str
) -> Run:
    latencies: list[float] = []
    await predictor.predict(photos[0])  # warm: the graph is built, oneDNN primitives cached
    batches_before = predictor.batches_run
    rechecked_before = getattr(predictor.backend, "rechecked", None)
    deadline = time.perf_counter() + seconds

    async def client(index: int) -> None:
        n = index
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await predictor.predict(photos[n % len(photos)])
            latencies.append(time.perf_counter() - t0)
            n += clients

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    batches = predictor.batches_run - batches_before
    rechecked = None
    if rechecked_before is not None:
        rechecked = (predictor.backend.rechecked - rechecked_before) / max(1, len(latencies))
    return Run(name, len(latencies) / elapsed, latencies, batches, rechecked)


def print_runs(title: str, runs: list[Run]) -> None:
    naive = runs[0].images_per_s
    print(f"\n{title}")
    print(
        f"  {'':40s} {'x naive':>8s} {'images/s':>9s} {'p50 ms':>8s} {'p95 ms':>8s} "
        f"{'photos/pass':>11s} {'rechecked':>9s}"
    )
    for run in runs:
        per_pass = f"{len(run.latencies) / run.batches:.1f}" if run.batches else "1"
        rechecked = f"{run.rechecked:.0%}" if run.rechecked is not None else "-"
        print(
            f"  {run.name:40s} {run.images_per_s / naive:7.2f}x {run.images_per_s:9.1f} "
            f"{run.percentile(0.5):8.0f} {run.percentile(0.95):8.0f} {per_pass:>11s} "
            f"{rechecked:>9s}",
            flush=True,
        )


def onnx_bundle(name: str, bundle: Bundle, scratch: str) -> Path:
    """A bundle folder with a current model.onnx: the bundled one, or this model exported."""
    if name == "bundled":
        return BUNDLED_MODEL_DIR
    if Path(name).is_dir() and (Path(name) / "model.onnx").is_file():
        return Path(name)
    card = dataclasses.replace(bundle.card, architecture=name)
    directory = save_bundle(bundle.model, card, Path(scratch) / name)
    export_onnx(directory)
    return directory


async def serve(classifier, photos, clients: int, seconds: float, name: str) -> Run:
    predictor = Predictor(classifier, max_batch=16, max_wait_ms=5.0, warm_up=True)
    try:
        return await predictor_run(predictor, photos, clients, seconds, name)
    finally:
        await predictor.close()


def int8_bundle(directory: Path, photos: list[Image.Image], scratch: str) -> Path:
    """A copy of the bundle whose model.onnx is quantised to int8 (static, per-channel QDQ,
    calibrated on 32 of the photos): the speed that int8 (VNNI) would buy. Never served: int8
    changes answers, and this project keeps the fp32 model's."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    card = read_card(directory)
    batch = np.stack([preprocess_array(photo, card) for photo in photos[:32]])

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.parts = iter([{"images": batch[i : i + 8]} for i in range(0, len(batch), 8)])

        def get_next(self):
            return next(self.parts, None)

    out = Path(scratch) / "int8"
    out.mkdir()
    shutil.copy(directory / WEIGHTS_FILE, out / WEIGHTS_FILE)
    prepared = Path(scratch) / "prepared.onnx"
    quant_pre_process(str(directory / ONNX_FILE), str(prepared))
    quantize_static(
        str(prepared),
        str(out / ONNX_FILE),
        Calibration(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    card.onnx_sha256 = sha256_of(out / ONNX_FILE)
    write_card(card, out)
    return out


async def measure(
    name: str, photos, concurrency: list[int], seconds: float, int8: bool = False
) -> list[Run]:
    bundle, margin = model_bundle(name)
    runs = [naive_loop(bundle, photos, seconds)]
    top = max(concurrency)
    with tempfile.TemporaryDirectory() as scratch:
        directory = onnx_bundle(name, bundle, scratch)
        onnx = OnnxBackend(directory)
        for clients in concurrency:
            title = f"Predictor ONNX Runtime fp32, {clients} conc."
            runs.append(await serve(onnx, photos, clients, seconds, title))
        if int8:
            quantised = OnnxBackend(int8_bundle(directory, photos, scratch))
            title = f"ONNX Runtime int8 (not served), {top} conc."
            runs.append(await serve(quantised, photos, top, seconds, title))
    torch_fp32 = TorchBackend(bundle, inference="fp32")
    runs.append(await serve(torch_fp32, photos, top, seconds, f"Predictor torch fp32, {top} conc."))
    if cpu_has_native_bf16():
        bf16 = TorchBackend(bundle, inference="bf16", recheck_margin=margin)
        title = f"Predictor torch bf16{' + recheck' if margin else ''}, {top} conc."
        runs.append(await serve(bf16, photos, top, seconds, title))
    return runs


def describe(name: str) -> str:
    """What a --models entry is, for the table's title."""
    if name == "bundled":
        return f" ({load_bundle(BUNDLED_MODEL_DIR).card.version})"
    if Path(name).is_dir():
        card = load_bundle(Path(name)).card
        return f" ({card.version}, {card.architecture}, {card.input_size[-1]} px)"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--models", default="bundled,resnet50")
    parser.add_argument(
        "--int8", default="resnet50", help="models also measured quantised to int8 ('' for none)"
    )
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--photos", type=int, default=64)
    args = parser.parse_args()
    threads = configure_threads()
    photos = load_photos(args.photos)
    concurrency = [int(c) for c in args.concurrency.split(",")]
    print(
        f"{threads} threads (torch and ONNX Runtime), native bf16: {cpu_has_native_bf16()}, "
        f"torch {torch.__version__}; "
        f"{args.seconds:.0f} s per measurement; {len(photos)} real photos (decoded, "
        "preprocessing included); closed-loop clients"
    )
    for name in args.models.split(","):
        int8 = name in args.int8.split(",")
        runs = asyncio.run(measure(name, photos, concurrency, args.seconds, int8))
        print_runs(f"{name}{describe(name)}", runs)
    print(
        "\nx naive: images/s over the naive loop's, same run. p50/p95: per request, queueing "
        "included. The machine may be shared with other work: compare ratios, not absolutes."
    )


if __name__ == "__main__":
    main()
