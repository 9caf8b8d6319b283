"""Single-photo latency of the diagnosis CLI and of the model per architecture, in one run.

    python bench/cli_latency.py [--photo PATH] [--repeats 5] [--python /tmp/lean/bin/python]

Prints (1) the wall time and peak memory of `python -m diagnosis predict PHOTO --json` as a user
runs it (process start, imports, model load, one photo), with this interpreter or another one
(`--python`, e.g. a venv with only the serving install, run from outside the checkout so that it
imports its installed copy), and (2) the CPU forward time per photo (batch 1, fp32, eager, torch)
for the bundled model and the candidate architectures of docs/model-report.md (random weights:
speed does not depend on them), with ratios to the bundled model; skipped where torch is not
installed. Absolute times on a shared 2-core machine are noisy; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis.bundle import BUNDLED_MODEL_DIR, create_model, read_card  # noqa: E402

DEFAULT_PHOTO = ROOT.parent / "shared/datasets/skin-photos/acne/dermnet-0121064acd137936.jpg"
ARCHITECTURES = ("tf_efficientnet_lite0", "resnet18", "resnet50")


def cli_runs(python: str, photo: Path, repeats: int) -> tuple[list[float], list[int]]:
    """Wall seconds and peak RSS (MB, from /proc at exit) of each run."""
    times, peaks = [], []
    # Another interpreter runs from an empty folder, so that it imports its own installed copy.
    cwd = ROOT if python == sys.executable else tempfile.mkdtemp()
    report = "import atexit, runpy, sys\n" + (
        "atexit.register(lambda: print([l for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')][0].split()[1], file=sys.stderr))\n"
        "sys.argv = ['diagnosis', 'predict', sys.argv[1], '--json']\n"
        "runpy.run_module('diagnosis', run_name='__main__', alter_sys=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(
            [python, "-c", report, str(photo.resolve())],
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - started)
        peaks.append(int(result.stderr.split()[-1]) // 1024)
    return times, peaks


def forward_ms(architecture: str, size: int, repeats: int) -> float:
    import torch

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
    parser.add_argument("--python", default=sys.executable, help="interpreter to time the CLI with")
    args = parser.parse_args()
    card = read_card(BUNDLED_MODEL_DIR)
    size = card.input_size[-1]

    times, peaks = cli_runs(args.python, args.photo, args.repeats)
    print(
        f"{args.python} -m diagnosis predict (one photo, {card.version}): "
        f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, "
        f"peak RSS {max(peaks)} MB over {len(times)} runs"
    )
    try:
        import torch
    except ImportError:
        print("\ntorch is not installed: no forward-pass comparison (it needs the [train] extra)")
        return
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
