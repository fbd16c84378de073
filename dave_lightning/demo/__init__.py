"""The demo: fine-tune a tiny ViT on the embedded dataset with the attribution monitor."""

from dave_lightning.demo.classifier import ImageClassifier
from dave_lightning.demo.run import DemoConfig, DemoResult, run_demo

__all__ = ["DemoConfig", "DemoResult", "ImageClassifier", "run_demo"]
