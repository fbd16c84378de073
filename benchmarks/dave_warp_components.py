"""Which part of DAVE's Step II costs EnergyPG on a model: each warp component left out in turn.

Loads (or trains) ``compare_methods.py``'s cached models and scores DAVE on the same probe images
(16 most confident correct validation images, N = 16) with the paper's warps, then without the
flip, the rotation, the shift, the scaling or all of them, each with the calibrated noise level
and without noise. Prints one line per model.

Run (from the repository root, ``PYTHONPATH=$PWD``; 1 thread, as the cached models were trained):
    python benchmarks/dave_warp_components.py --seeds 1 0
"""

from __future__ import annotations

import argparse

import torch
from _compare_eval import select_probe
from _trained import trained_classifier

from dave_lightning import calibrate_noise_alpha
from dave_lightning.metrics.functional import energy_pointing_game
from dave_lightning.registry import get_attributor

VARIANTS = {
    "paper warps": {},
    "no flip": {"flip_prob": 0.0},
    "no rotation": {"rotation": 0.0},
    "no translation": {"translation": 0.0},
    "no scale": {"scale": (1.0, 1.0)},
    "no warp": {"flip_prob": 0.0, "rotation": 0.0, "translation": 0.0, "scale": (1.0, 1.0)},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--model", default="normal", help="cached setting (default normal)")
    parser.add_argument("--quick", action="store_true", help="the --quick models")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for seed in args.seeds:
        module, val = trained_classifier(args.model, quick=args.quick, seed=seed)
        model = module.model
        probe = select_probe(model, val, 16, pool=len(val))
        alpha, _ = calibrate_noise_alpha(model, probe.images, probe.labels)
        parts = []
        for name, options in VARIANTS.items():
            for level in (alpha, 0.0):
                dave = get_attributor("dave", model, num_samples=16, noise_alpha=level, **options)
                maps = dave.attribute(probe.images, probe.labels)
                energy = 100 * float(energy_pointing_game(maps, probe.boxes).nanmean())
                parts.append(f"{name} (alpha {level:.2f}) {energy:.1f}")
        print(f"{args.model} seed {seed}: DAVE EnergyPG % on the probe: " + "; ".join(parts))


if __name__ == "__main__":
    main()
