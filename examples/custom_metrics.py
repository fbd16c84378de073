"""The explanation-quality metrics on their own: GridPG, EnergyPG, pixel deletion, artifacts.

    python examples/custom_metrics.py

Everything runs offline on the embedded dataset with a random-weight tiny ViT (so the numbers are
near chance; point ``--checkpoint`` at ``runs/demo/checkpoints/last.ckpt`` for a trained one).
The metrics are ordinary torchmetrics: accumulate with ``update``, finish with ``compute``, and
they synchronise across processes under DDP.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import dave_lightning as dl
from dave_lightning.data import SyntheticShapes, make_grids
from dave_lightning.demo import ImageClassifier
from dave_lightning.metrics import (
    EnergyPointingGame,
    GridPointingGame,
    PatchArtifactScore,
    PixelDeletion,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--num-samples", type=int, default=8)
    args = parser.parse_args()

    data = SyntheticShapes("val", length=args.images, image_size=64)
    images = torch.stack([data[i][0] for i in range(args.images)])
    labels = torch.tensor([data[i][1] for i in range(args.images)])
    boxes = [data[i][2] for i in range(args.images)]
    if args.checkpoint:
        model = ImageClassifier.load_from_checkpoint(args.checkpoint, map_location="cpu").model
    else:
        model = ImageClassifier(
            num_classes=data.num_classes,
            model_kwargs={
                "img_size": 64,
                "patch_size": 8,
                "embed_dim": 96,
                "depth": 4,
                "num_heads": 3,
            },
        ).model
    model.eval()
    dave = dl.DAVE(model, num_samples=args.num_samples)
    maps = dave.attribute(images, labels)

    energy = EnergyPointingGame()
    energy.update(maps, boxes)  # boxes: one (n_i, 4) tensor per image
    print(
        f"EnergyPG            {float(energy.compute()):.3f}"
        "  (share of positive attribution in the boxes)"
    )

    grids = make_grids(
        images, labels, grid_size=2, seed=0, on_empty="ignore"
    )  # 2x2 grids of distinct classes
    grid_game = GridPointingGame(grid_size=2)
    if len(grids):
        grid_maps = dave.attribute(grids.images, grids.targets)  # (G, K, H, W)
        grid_game.update(grid_maps.flatten(0, 1), grids.explain_cells.flatten())
        print(f"GridPG              {float(grid_game.compute()):.3f}  (chance 0.25)")
    else:
        print(f"GridPG              skipped: {grids.reason}")

    deletion = PixelDeletion(steps=10, order="most_relevant_first")
    deletion.update(model, images, maps, labels)
    result = deletion.compute()
    print(f"deletion AUC        {float(result['auc']):.3f}  (most relevant first: lower is better)")

    artifacts = PatchArtifactScore(patch_size=8)
    artifacts.update(maps)
    print(f"patch artifacts     {float(artifacts.compute()):.3f}  (lower is better)")


if __name__ == "__main__":
    main()
