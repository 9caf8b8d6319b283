"""Where a served batch's time goes: cProfile by Python function, torch.profiler by operator.

    python bench/profile_inference.py [--model bundled|resnet50] [--batches 20] [--batch 16]

Runs `TorchBackend.predict_batch` (what the Predictor's worker runs) on batches of decoded real
photos, after a warm-up, under cProfile and then under torch.profiler, and prints the top
entries of each: preprocessing (PIL resize, normalise), the bf16 graph, the fp32 rechecks,
building the answers. docs/performance.md summarises one run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from inference import load_photos, model_bundle  # noqa: E402

from diagnosis.serving.torch_backend import TorchBackend, configure_threads, preprocess  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args()
    threads = configure_threads()
    bundle, margin = model_bundle(args.model)
    classifier = TorchBackend(bundle, inference="auto", recheck_margin=margin)
    classifier.warm_up()
    photos = load_photos(args.batch * args.batches, seed=1)
    batches = [photos[i : i + args.batch] for i in range(0, len(photos), args.batch)]
    classifier.predict_batch(batches[0])
    print(
        f"{args.model}: {classifier.precision}, recheck margin {margin}, {threads} threads, "
        f"{args.batches} batches of {args.batch} real photos"
    )

    # Phases, timed one by one: what the worker spends a batch on.
    phases = {"preprocess": 0.0, "bf16 graph": 0.0, "fp32 (rechecks or fp32 mode)": 0.0}
    rows = 0
    for batch in batches:
        t0 = time.perf_counter()
        tensor = torch.stack([preprocess(image, classifier.card) for image in batch])
        tensor = tensor.contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        phases["preprocess"] += t1 - t0
        if classifier.precision == "fp32":
            classifier.forward(tensor)
            phases["fp32 (rechecks or fp32 mode)"] += time.perf_counter() - t1
            continue
        logits = classifier._run(torch.bfloat16, tensor)
        t2 = time.perf_counter()
        phases["bf16 graph"] += t2 - t1
        close = classifier._close_calls(logits) if margin else torch.zeros(len(batch), dtype=bool)
        if bool(close.any()):
            classifier._run(torch.float32, tensor[close])
            rows += int(close.sum())
        phases["fp32 (rechecks or fp32 mode)"] += time.perf_counter() - t2
    total = sum(phases.values())
    print(f"\n== per batch of {args.batch}: {total / len(batches) * 1000:.0f} ms")
    for name, seconds in phases.items():
        print(f"  {name:30s} {seconds / len(batches) * 1000:6.1f} ms  {seconds / total:5.1%}")
    print(f"  ({rows / len(photos):.0%} of photos rechecked in fp32)")

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for batch in batches:
        classifier.predict_batch(batch)
    profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"\n== cProfile: {len(photos) / elapsed:.1f} photos/s (profiler overhead included)")
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])

    rechecked_before = classifier.rechecked
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches:
            classifier.predict_batch(batch)
    share = (classifier.rechecked - rechecked_before) / len(photos)
    print(f"\n== torch.profiler by operator (self CPU time); {share:.0%} of photos rechecked")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
