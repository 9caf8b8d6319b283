"""Single-photo latency of the diagnosis CLI and of the model per architecture, in one run.

    python bench/cli_latency.py [--photo PATH] [--repeats 5]

Prints (1) the wall time of `python -m diagnosis predict PHOTO` as a user runs it (process start,
imports, model load, one photo), and (2) the CPU forward time per photo (batch 1, fp32, eager)
for the bundled model and the candidate architectures of docs/model-report.md (random weights:
speed does not depend on them), with ratios to the bundled model. Absolute times on a shared
2-core machine are noisy; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis.bundle import BUNDLED_MODEL_DIR, create_model, read_card  # noqa: E402

DEFAULT_PHOTO = ROOT.parent / "shared/datasets/skin-photos/acne/dermnet-0121064acd137936.jpg"
ARCHITECTURES = ("tf_efficientnet_lite0", "resnet18", "resnet50")


def cli_seconds(photo: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "diagnosis", "predict", str(photo), "--json"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - started)
    return times


def forward_ms(architecture: str, size: int, repeats: int) -> float:
    model = create_model(architecture, 12).eval()
    batch = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        for _ in range(3):
            model(batch)
        times = []
        for _ in range(repeats * 4):
            started = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    card = read_card(BUNDLED_MODEL_DIR)
    size = card.input_size[-1]

    times = cli_seconds(args.photo, args.repeats)
    print(
        f"python -m diagnosis predict (one photo, {card.version}): "
        f"median {statistics.median(times):.2f} s, min {min(times):.2f} s "
        f"over {len(times)} runs"
    )
    print(
        f"\nCPU forward pass per photo, batch 1, fp32, {size} px, "
        f"{torch.get_num_threads()} threads:"
    )
    baseline = None
    for architecture in ARCHITECTURES:
        ms = forward_ms(architecture, size, args.repeats)
        baseline = baseline or ms
        print(f"  {architecture:24s} {ms:7.1f} ms   x{ms / baseline:.2f} of {ARCHITECTURES[0]}")


if __name__ == "__main__":
    main()
