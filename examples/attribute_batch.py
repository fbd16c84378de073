"""The core API without Lightning: DAVE and baselines on a batch, saved as one figure.

    python examples/attribute_batch.py                       # a random-weight tiny ViT, offline
    python examples/attribute_batch.py --checkpoint runs/demo/checkpoints/last.ckpt

With a demo checkpoint the maps explain a trained model (``dave-lightning demo`` writes one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import torch

import dave_lightning as dl
from dave_lightning.data import SyntheticShapes
from dave_lightning.demo import ImageClassifier
from dave_lightning.viz import attribution_figure, to_display

matplotlib.use("Agg")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, help="a checkpoint written by dave-lightning demo"
    )
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument(
        "--num-samples", type=int, default=16, help="DAVE's N (paper: 50 for metrics)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/attribute_batch.png"))
    args = parser.parse_args()

    dataset = SyntheticShapes("val", length=args.images, image_size=64)
    images = torch.stack([dataset[i][0] for i in range(args.images)])
    labels = torch.tensor([dataset[i][1] for i in range(args.images)])
    if args.checkpoint:
        model = ImageClassifier.load_from_checkpoint(args.checkpoint, map_location="cpu").model
    else:
        model = ImageClassifier(
            num_classes=dataset.num_classes,
            model_kwargs={
                "img_size": 64,
                "patch_size": 8,
                "embed_dim": 96,
                "depth": 4,
                "num_heads": 3,
            },
        ).model
    model.eval()

    methods = {
        "dave": dl.DAVE(model, num_samples=args.num_samples),  # Steps I-III
        "gradient": dl.get_attributor("gradient", model),
        "effective_input_x_gradient": dl.get_attributor("effective_input_x_gradient", model),
    }
    maps = {name: method.attribute(images, labels) for name, method in methods.items()}
    for name, value in maps.items():
        print(
            f"{name:28s} maps {tuple(value.shape)}, "
            f"positive share {float((value > 0).float().mean()):.2f}"
        )

    titles = [dataset.classes[int(label)] for label in labels]
    figure = attribution_figure(to_display(images, dataset.mean, dataset.std), maps, titles)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
