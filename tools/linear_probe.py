"""The baseline fine-tuning must beat: a linear probe on frozen Lite0 ImageNet features.

    python tools/linear_probe.py --data ../shared/datasets/skin-photos [--split SPLIT.json]

Same split (default: the bundled model's) and the same evaluation preprocessing (224 px, centre
crop) as the bundled model: the ImageNet model's pooled 1280-d features of every photo, then a
class-weighted multinomial logistic regression on the train part, its L2 strength chosen by val
macro-F1; prints val and test figures with `diagnosis.training.metrics.compute_metrics`
(macro-F1 over the named labels).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from tqdm import tqdm  # noqa: E402

from diagnosis.bundle import BUNDLED_MODEL_DIR, create_model, read_card  # noqa: E402
from diagnosis.serving.torch_backend import configure_threads  # noqa: E402
from diagnosis.training.data import PhotoDataset, class_weights, load_split  # noqa: E402
from diagnosis.training.metrics import compute_metrics  # noqa: E402
from diagnosis.training.train import initial_weights  # noqa: E402
from diagnosis.training.train_config import TrainConfig  # noqa: E402

L2_GRID = (1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def features(model, samples, data_dir: Path, card, workers: int) -> np.ndarray:
    loader = DataLoader(
        PhotoDataset(samples, data_dir, card, train=False), batch_size=32, num_workers=workers
    )
    out = []
    with torch.inference_mode():
        for images, _ in tqdm(loader, desc="features", leave=False):
            out.append(model.forward_head(model.forward_features(images), pre_logits=True))
    return torch.cat(out).numpy()


def fit(x, y, weights, l2: float, classes: int, steps: int = 300) -> torch.nn.Linear:
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], classes)
    optimiser = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)

    def closure():
        optimiser.zero_grad()
        loss = loss_fn(head(x), y) + l2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", type=Path, default=BUNDLED_MODEL_DIR / "split.json")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    configure_threads()
    card = read_card(BUNDLED_MODEL_DIR)  # 224 px, mean = std = 0.5, the labels
    labels = card.labels
    model = create_model("tf_efficientnet_lite0", len(labels)).eval()
    config = TrainConfig(data_dir=args.data, out_dir=Path("."), arch="tf_efficientnet_lite0")
    print(initial_weights(config, model))
    split = load_split(args.split)
    data = {}
    for part in ("train", "val", "test"):
        samples = split[part]
        x = torch.from_numpy(features(model, samples, args.data, card, args.workers))
        y = torch.tensor([labels.index(s.label) for s in samples])
        data[part] = (x, y)
        print(f"{part}: {len(samples)} photos")
    mean, std = data["train"][0].mean(0), data["train"][0].std(0) + 1e-6
    data = {part: ((x - mean) / std, y) for part, (x, y) in data.items()}
    weights = class_weights(split["train"], labels)

    def figures(head, part):
        x, y = data[part]
        with torch.no_grad():
            probs = torch.softmax(head(x), dim=1).numpy()
        return compute_metrics(probs, y.numpy(), labels, card)

    best = None
    for l2 in L2_GRID:
        head = fit(*data["train"], weights, l2, len(labels))
        val = figures(head, "val")
        print(f"L2 {l2:g}: val macro-F1 {val['macro_f1']:.3f}, top-3 {val['top3']:.3f}")
        if best is None or val["macro_f1"] > best[0]:
            best = (val["macro_f1"], l2, head)
    _, l2, head = best
    test = figures(head, "test")
    print(
        f"linear probe (L2 {l2:g}, chosen on val): val macro-F1 {best[0]:.3f}; test macro-F1 "
        f"{test['macro_f1']:.3f}, accuracy {test['accuracy']:.3f}, top-3 {test['top3']:.3f}"
    )


if __name__ == "__main__":
    main()
