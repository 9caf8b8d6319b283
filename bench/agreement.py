"""Do the optimised inference paths give the plain fp32 model's answers? On the shared photos.

    python bench/agreement.py [--limit N] [--data DIR] [--bundle DIR] [--batch 16]

Every photo is decoded and preprocessed once; its logits then come from (1) the plain fp32 model
(eager, NCHW, as before any optimisation: the reference), (2) ONNX Runtime on the bundle's
model.onnx (what the bot serves by default), (3) torch's served fp32 path (channels-last frozen
graph), (4) bf16 alone (the frozen bf16 graph, no recheck) and (5) the served bf16 path (bf16,
close calls recomputed in fp32). For each path: top-1 agreement with the reference, agreement
of the abstain ("I can't tell") and urgent ("see a dermatologist soon") decisions, the largest
difference of any class probability, how many photos were rechecked in fp32, and its speed.
bf16 paths are skipped on a CPU without native bf16 (emulated bf16 is slow and never served
there).

Exit code 1 when a served path's top-1 agreement is under --min-agreement (default 0.995).
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis.bundle import BUNDLED_MODEL_DIR, ModelCard, load_bundle  # noqa: E402
from diagnosis.serving.onnx_backend import OnnxBackend, onnx_problem  # noqa: E402
from diagnosis.serving.torch_backend import (  # noqa: E402
    TorchBackend,
    configure_threads,
    cpu_has_native_bf16,
    preprocess,
)

DATASET = ROOT.parent / "shared/datasets/skin-photos"


@dataclass
class PathResult:
    name: str
    served: bool
    seconds: float = 0.0
    top1: int = 0
    abstain: int = 0
    urgent: int = 0
    max_prob_diff: float = 0.0
    worst_photo: str = ""
    rechecked: int = 0
    disagreements: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)  # abstain/urgent differences


class OnnxPath:
    """OnnxBackend with TorchBackend's forward(tensor) -> tensor, for this loop."""

    rechecked = 0

    def __init__(self, directory: Path):
        self.classifier = OnnxBackend(directory)

    def warm_up(self) -> None:
        self.classifier.warm_up()

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.classifier.forward(batch.contiguous().numpy()))


def decisions(logits: torch.Tensor, card: ModelCard) -> tuple[torch.Tensor, ...]:
    probs = torch.softmax(logits / card.temperature, dim=1)
    best, top = probs.max(dim=1)
    abstain = best < card.abstain_threshold
    if card.other_label is not None:
        abstain |= top == card.labels.index(card.other_label)
    malignant = [card.labels.index(label) for label in card.malignant_labels]
    urgent = probs[:, malignant].sum(dim=1) >= card.urgent_threshold
    return probs, top, abstain, urgent


def photo_paths(data: Path, limit: int | None, seed: int) -> list[Path]:
    paths = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if limit is not None and limit < len(paths):
        paths = sorted(random.Random(seed).sample(paths, limit))
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATASET)
    parser.add_argument("--bundle", type=Path, default=BUNDLED_MODEL_DIR)
    parser.add_argument("--limit", type=int, default=None, help="a fixed random subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--min-agreement", type=float, default=0.995)
    args = parser.parse_args()

    threads = configure_threads()
    bundle = load_bundle(args.bundle)
    card = bundle.card
    plain = copy.deepcopy(bundle.model).eval()  # before TorchBackend makes it channels-last
    served_fp32 = TorchBackend(bundle, inference="fp32")
    paths: list[tuple[str, TorchBackend | OnnxPath | None, bool]] = [
        ("plain fp32 (reference)", None, False)
    ]
    problem = onnx_problem(args.bundle)
    if problem is None:
        paths.append(("served ONNX Runtime fp32 (default)", OnnxPath(args.bundle), True))
    else:
        print(f"no ONNX Runtime path: {problem}")
    paths.append(("served torch fp32 (channels-last)", served_fp32, True))
    native = cpu_has_native_bf16()
    if native:
        paths.append(
            ("bf16 alone (no recheck)", TorchBackend(bundle, "bf16", recheck_margin=0), False)
        )
        paths.append(("served bf16 (close calls in fp32)", TorchBackend(bundle, "bf16"), True))
    for _, classifier, _ in paths:
        if classifier is not None:
            classifier.warm_up()

    photos = photo_paths(args.data, args.limit, args.seed)
    subset = f" (fixed random subset, seed {args.seed})" if args.limit else ""
    print(
        f"model {card.version} ({card.architecture}); {len(photos)} photos from {args.data}"
        f"{subset}; "
        f"batch {args.batch}; {threads} threads; native bf16: {native}",
        flush=True,
    )
    results = [PathResult(name, served) for name, _, served in paths]
    for start in tqdm(range(0, len(photos), args.batch), unit="batch", desc="agreement"):
        chunk = photos[start : start + args.batch]
        batch = torch.stack([preprocess(Image.open(p).convert("RGB"), card) for p in chunk])
        outputs = []
        for (_, classifier, _), result in zip(paths, results, strict=True):
            started = time.perf_counter()
            if classifier is None:
                with torch.inference_mode():
                    logits = plain(batch).float()
                    if card.test_time_flip:  # the served answer averages photo and mirror
                        logits = (logits + plain(batch.flip(-1)).float()) / 2
            else:
                before = classifier.rechecked
                logits = classifier.forward(batch.contiguous(memory_format=torch.channels_last))
                result.rechecked += classifier.rechecked - before
            result.seconds += time.perf_counter() - started
            outputs.append(decisions(logits, card))
        ref_probs, ref_top, ref_abstain, ref_urgent = outputs[0]
        for (probs, top, abstain, urgent), result in zip(outputs, results, strict=True):
            result.top1 += int((top == ref_top).sum())
            result.abstain += int((abstain == ref_abstain).sum())
            result.urgent += int((urgent == ref_urgent).sum())
            diff = (probs - ref_probs).abs().max(dim=1).values
            worst = int(diff.argmax())
            if float(diff[worst]) > result.max_prob_diff:
                result.max_prob_diff = float(diff[worst])
                result.worst_photo = str(chunk[worst].relative_to(args.data))
            for i in torch.nonzero(top != ref_top).flatten().tolist():
                result.disagreements.append(str(chunk[i].relative_to(args.data)))
            for name, got, want in (
                ("abstain", abstain, ref_abstain),
                ("urgent", urgent, ref_urgent),
            ):
                for i in torch.nonzero(got != want).flatten().tolist():
                    result.decisions.append(
                        f"{chunk[i].relative_to(args.data)} ({name} {bool(want[i])} -> "
                        f"{bool(got[i])})"
                    )

    n = len(photos)
    print(
        f"\n{'path':36s} {'top-1':>8s} {'abstain':>8s} {'urgent':>8s} {'max |dp|':>9s} "
        f"{'rechecked':>9s} {'photos/s':>9s}"
    )
    failed = False
    for r in results:
        print(
            f"{r.name:36s} {r.top1 / n:8.2%} {r.abstain / n:8.2%} {r.urgent / n:8.2%} "
            f"{r.max_prob_diff:9.2g} {r.rechecked / n:9.1%} {n / r.seconds:9.1f}"
        )
        if r.served and r.top1 / n < args.min_agreement:
            failed = True
    for r in results[1:]:
        if r.max_prob_diff > 0:
            print(f"  {r.name}: largest probability difference on {r.worst_photo}")
        if r.disagreements:
            shown = ", ".join(r.disagreements[:5])
            print(f"  {r.name}: {len(r.disagreements)} top-1 disagreements, e.g. {shown}")
        if r.decisions:
            shown = ", ".join(r.decisions[:6])
            print(f"  {r.name}: abstain/urgent differences (fp32 -> this path): {shown}")
    print(
        "photos/s: model forward only (preprocessing excluded), batch "
        f"{args.batch}; shared machine, so compare within this run"
    )
    if failed:
        print(f"FAIL: a served path agrees on fewer than {args.min_agreement:.1%} of top-1 answers")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
