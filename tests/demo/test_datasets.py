"""The demo's data: the spurious mark where the demo promises it, normalised as the model says."""

from __future__ import annotations

import pytest
import timm
import torch

from dave_lightning.data import IMAGENET_MEAN, IMAGENET_STD, ShapeSample, SyntheticShapes
from dave_lightning.demo.run import DemoConfig, build_classifier, datasets, normalization
from dave_lightning.demo.shortcut import unmarked_test_set
from dave_lightning.errors import ConfigurationError
from dave_lightning.explain import ModelCreationError

SMALL = {"image_size": 32, "train_size": 18, "val_size": 12}


def samples(dataset: SyntheticShapes) -> list[ShapeSample]:
    return [dataset.sample(index) for index in range(len(dataset))]


def mark_colour(dataset: SyntheticShapes, sample: ShapeSample) -> torch.Tensor:
    """The mark's pixels, checked to be one solid colour, as a ``(3,)`` uint8 tensor."""
    x1, y1, x2, y2 = (int(v) for v in sample.cue_box[0].tolist())
    patch = sample.pixels[:, y1:y2, x1:x2]
    assert patch.numel() > 0
    colour = patch[:, 0, 0]
    assert torch.equal(patch, colour.view(3, 1, 1).expand_as(patch))
    return colour


def label_colour(dataset: SyntheticShapes, label: int) -> torch.Tensor:
    return (dataset.cue_colours[label] * 255).round().to(torch.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("split", [0, 1], ids=["train", "validation"])
def test_spurious_marks_carry_the_label_colour_in_training_and_validation(split: int) -> None:
    dataset = datasets(DemoConfig(spurious=True, **SMALL))[split]
    for sample in samples(dataset):
        assert sample.cue_box.shape == (1, 4)
        assert sample.cue_class == sample.label
        assert torch.equal(mark_colour(dataset, sample), label_colour(dataset, sample.label))
        x1, y1, x2, y2 = (int(v) for v in sample.cue_box[0].tolist())
        assert not sample.mask[y1:y2, x1:x2].any()  # away from the object


@pytest.mark.slow
def test_without_the_flag_no_image_has_a_mark() -> None:
    for dataset in datasets(DemoConfig(spurious=False, **SMALL)):
        for sample in samples(dataset):
            assert sample.cue_box.shape == (0, 4)
            assert sample.cue_class is None


@pytest.mark.slow
def test_the_marks_differ_from_the_unmarked_images_only_inside_the_mark() -> None:
    marked = datasets(DemoConfig(spurious=True, **SMALL))[1]
    plain = datasets(DemoConfig(spurious=False, **SMALL))[1]
    for index in range(len(marked)):
        with_mark, without = marked.sample(index), plain.sample(index)
        x1, y1, x2, y2 = (int(v) for v in with_mark.cue_box[0].tolist())
        outside = with_mark.pixels.clone()
        outside[:, y1:y2, x1:x2] = without.pixels[:, y1:y2, x1:x2]
        assert torch.equal(outside, without.pixels)


@pytest.mark.slow
def test_the_evaluation_set_has_no_mark_and_the_validation_normalisation() -> None:
    config = DemoConfig(spurious=True, **SMALL)
    val = datasets(config)[1]
    clean = unmarked_test_set(config, val)
    assert clean.split == "test"
    assert len(clean) == config.val_size
    assert (clean.mean, clean.std) == (val.mean, val.std)
    for sample in samples(clean):
        assert sample.cue_box.shape == (0, 4)
        assert sample.cue_class is None


def test_the_data_is_normalised_as_the_model_data_config_says() -> None:
    config = DemoConfig(**SMALL)
    module = build_classifier(config)
    data_config = timm.data.resolve_model_data_config(module.model)
    assert tuple(data_config["mean"]) == IMAGENET_MEAN
    assert tuple(data_config["std"]) == IMAGENET_STD
    assert data_config["crop_pct"] == 1.0  # the images are rendered at the input size
    for dataset in datasets(config, module.model):
        assert (dataset.mean, dataset.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert module.hparams["model_kwargs"]["pretrained_cfg_overlay"]["crop_pct"] == 1.0


@pytest.mark.slow
def test_pretrained_models_keep_their_statistics_and_the_data_follows() -> None:
    config = DemoConfig(pretrained=True, **SMALL)
    overlay = config.model_kwargs()["pretrained_cfg_overlay"]
    assert overlay == {"crop_pct": 1.0}
    expected = timm.models.get_pretrained_cfg(config.model)
    for dataset in datasets(config):  # the model built without weights: the same configuration
        assert dataset.mean == tuple(expected.mean) != IMAGENET_MEAN
        assert dataset.std == tuple(expected.std)


def test_datasets_follow_any_model_they_are_given() -> None:
    model = timm.create_model(
        "vit_tiny_patch16_224",
        img_size=32,
        patch_size=8,
        depth=1,
        pretrained_cfg_overlay={"mean": (0.1, 0.2, 0.3), "std": (0.4, 0.5, 0.6)},
    )
    assert normalization(model) == ([0.1, 0.2, 0.3], [0.4, 0.5, 0.6])
    train, val = datasets(DemoConfig(**SMALL), model)
    assert train.mean == val.mean == (0.1, 0.2, 0.3)
    assert train.std == val.std == (0.4, 0.5, 0.6)


def test_an_unknown_model_is_a_one_line_error() -> None:
    with pytest.raises(ModelCreationError, match="unknown timm model 'nonexistent_vit'"):
        build_classifier(DemoConfig(model="nonexistent_vit"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_asking_for_a_missing_gpu_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="no CUDA GPU is available"):
        DemoConfig(device="cuda").accelerator()
    assert DemoConfig(device="auto").accelerator() == "cpu"
