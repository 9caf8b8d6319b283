"""Does decoding a photo only as large as the model needs change any answer? On the shared photos.

    python bench/decode_agreement.py [--limit 600] [--sizes 1280x960,2560x1920] [--seed 0]

The dataset's photos are 448 x 336 and 180 x 180: small enough that intake decodes them at full
size either way. So each is first made into what a phone sends (upscaled to each --sizes, the
short side matched and the long one cropped, saved as JPEG q90), and those bytes go through
intake twice: decoded at full size (as before) and at the model's size (`need_side`: a JPEG's
1/2-1/8 DCT scaling, then a whole-factor box reduction). For each: the quality verdict (passed,
and its reasons), and the bundled model's top-1, abstain and urgent decisions on ONNX Runtime.
Prints the agreement of each and the largest probability difference.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnosis.analysis import decode_side  # noqa: E402
from diagnosis.bundle import BUNDLED_MODEL_DIR  # noqa: E402
from diagnosis.intake import open_photo  # noqa: E402
from diagnosis.quality import check_quality  # noqa: E402
from diagnosis.serving.onnx_backend import OnnxBackend  # noqa: E402

DATASET = ROOT.parent / "shared/datasets/skin-photos"


def phone_copy(path: Path, width: int, height: int, quality: int = 90) -> bytes:
    image = Image.open(path).convert("RGB")
    scale = max(width / image.width, height / image.height)
    size = (round(image.width * scale), round(image.height * scale))
    image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    buffer = io.BytesIO()
    image.crop((left, top, left + width, top + height)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=600)
    parser.add_argument("--sizes", default="1280x960,2560x1920")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--need", type=int, help="decode to this short side (default: served)")
    parser.add_argument(
        "--noise",
        action="store_true",
        help="instead: full-size decodes of the copy at JPEG q90 against q89 (how much a change "
        "as slight as one JPEG quality step moves the answers)",
    )
    args = parser.parse_args()

    backend = OnnxBackend(BUNDLED_MODEL_DIR)
    need = args.need or decode_side(backend.card)
    paths = sorted(DATASET.rglob("*.jpg"))
    paths = sorted(random.Random(args.seed).sample(paths, min(args.limit, len(paths))))
    print(f"{len(paths)} photos of {DATASET}; model {backend.version}, need_side {need} px")
    for size in args.sizes.split(","):
        width, height = (int(v) for v in size.split("x"))
        same = {"quality verdict": 0, "top-1": 0, "abstain": 0, "urgent": 0}
        largest = 0.0
        decoded_sizes = set()
        for path in paths:
            data = phone_copy(path, width, height)
            full, reduced = open_photo(data), open_photo(data, need_side=need)
            if args.noise:
                reduced = open_photo(phone_copy(path, width, height, quality=89))
            decoded_sizes.add(reduced.size)
            q_full, q_reduced = check_quality(full), check_quality(reduced)
            same["quality verdict"] += (q_full.ok, q_full.reasons) == (
                q_reduced.ok,
                q_reduced.reasons,
            )
            p_full, p_reduced = backend.predict_batch([full, reduced])
            same["top-1"] += p_full.top[0].label == p_reduced.top[0].label
            same["abstain"] += p_full.abstain == p_reduced.abstain
            same["urgent"] += p_full.urgent == p_reduced.urgent
            largest = max(
                largest,
                max(
                    abs(p_full.probabilities[k] - p_reduced.probabilities[k])
                    for k in p_full.probabilities
                ),
            )
        agreement = ", ".join(
            f"{name} {count}/{len(paths)} ({100 * count / len(paths):.1f}%)"
            for name, count in same.items()
        )
        print(
            f"{size} (decoded at {sorted(decoded_sizes)}): {agreement}; "
            f"largest probability difference {largest:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
