"""Small ViTs trained on the embedded dataset, cached on disk for the benchmark scripts.

    from _trained import trained_classifier
    module, val = trained_classifier("normal", quick=True, seed=1)

Settings (the demo's CPU-sized ViT on 64-pixel images, trained like the demo: with random resized
crops, flips and small rotations/shifts unless ``augment=False``; ``seed`` sets the data, the
initial weights and the augmentation draws):

* ``normal``: trained on clean images (8 epochs);
* ``short``: the same model after 4 epochs (an early, weaker model);
* ``spurious``: trained with the class-coloured mark (``cue_placement="inset"``): it learns the
  shortcut; its validation split carries the same mark.

``quick=True`` trains on 512 images for half the epochs. Checkpoints are cached in
``benchmarks/.cache`` keyed by every setting and the number of CPU threads (float reductions,
and so the trained weights, depend on it), so a second run with the same settings is instant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from dave_lightning.data import SyntheticShapes
from dave_lightning.demo import DemoConfig, ImageClassifier
from dave_lightning.demo.run import datasets, fit_classifier

CACHE = Path(__file__).resolve().parent / ".cache"

SETTINGS: dict[str, dict[str, object]] = {
    "normal": {"epochs": 8},
    "short": {"epochs": 4},
    "spurious": {"epochs": 4, "spurious": True},
}
"""On the demo's 2048 training images; sized so that three seeds of each fit a shared CPU."""
QUICK = {"train_size": 512, "val_size": 128}
"""``quick=True``: fewer images, and half the epochs (weak models: a smoke check)."""


def config_for(name: str, quick: bool = False, seed: int = 0, augment: bool = True) -> DemoConfig:
    """The :class:`DemoConfig` a setting trains with (augmented like the demo by default)."""
    options = dict(SETTINGS[name], seed=seed, augment=augment, progress=False, out=CACHE)
    if quick:
        options.update(QUICK, epochs=max(1, int(options["epochs"]) // 2))  # type: ignore[call-overload]
    return DemoConfig(**options)  # type: ignore[arg-type]


def _key(config: DemoConfig) -> str:
    """Every setting plus the thread count: training is reproducible only at a fixed count."""
    fields = {
        k: str(v) for k, v in dataclasses.asdict(config).items() if k not in ("out", "progress")
    }
    fields["threads"] = str(torch.get_num_threads())
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def trained_classifier(
    name: str, quick: bool = False, seed: int = 0, augment: bool = True
) -> tuple[ImageClassifier, SyntheticShapes]:
    """The trained module (eval mode, CPU) and its validation split; trains once, then caches."""
    config = config_for(name, quick, seed, augment)
    path = CACHE / f"{name}-{_key(config)}.pt"
    _, val = datasets(config)
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        module = ImageClassifier(**saved["hyper_parameters"])
        module.load_state_dict(saved["state_dict"])
        return module.eval(), val
    module, _, val = fit_classifier(config)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return module.cpu().eval(), val


def probe(val: SyntheticShapes, count: int) -> dict[str, object]:
    """The first ``count`` validation samples: images, labels, object boxes, masks, mark boxes."""
    samples = [val.sample(i) for i in range(min(count, len(val)))]
    return {
        "images": torch.stack([s.image for s in samples]),
        "labels": torch.tensor([s.label for s in samples]),
        "boxes": [s.box for s in samples],
        "masks": torch.stack([s.mask for s in samples]),
        "marks": [s.cue_box for s in samples],
    }
