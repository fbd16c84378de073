"""``dave-lightning explain``: attribute your own images with any timm model and checkpoint.

Images are loaded upright in RGB (:func:`~dave_lightning.image_files.load_rgb`: EXIF orientation,
16-bit and float samples scaled) and preprocessed with the model's own timm data configuration
(resize, crop, normalisation); each gets one PNG with the image, the map alone (inferno on black),
the overlay on a greyscale copy, a colour bar, and the predicted class and score in the title.
A progress bar per image goes to stderr when it is a terminal (``ExplainOptions.progress``).

Example:
    >>> import torch
    >>> from timm.models.vision_transformer import VisionTransformer
    >>> model = VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
    ...                           num_classes=3)
    >>> state = checkpoint_state({"state_dict": {f"model.{k}": v for k, v in
    ...                                          model.state_dict().items()}})
    >>> load_weights(model, state)
"""

from __future__ import annotations

import difflib
import pickle
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from PIL import Image
from torch import Tensor, nn

from dave_lightning._output_folder import writable_folder
from dave_lightning._timm_models import create_model, first_line
from dave_lightning.attributor import Attributor
from dave_lightning.errors import (
    BadInputError,
    DaveError,
    ModelCreationError,
    UnsupportedModelError,
)
from dave_lightning.image_files import load_rgb
from dave_lightning.precision import AUTOCAST_CHOICES, AUTOCAST_FLAGS, autocast_dtype
from dave_lightning.registry import available_attributors, get_attributor

__all__ = [
    "ExplainError",
    "ExplainOptions",
    "ModelCreationError",
    "RandomWeightsWarning",
    "checkpoint_state",
    "create_model",
    "explain_images",
    "figure_title",
    "has_random_weights",
    "imagenet_class_names",
    "load_weights",
    "output_names",
    "preprocess",
]

_VIT_HINT = (
    "--method {method} needs a timm ViT (e.g. vit_tiny_patch16_224); "
    "--method gradient works with any model"
)


_RANDOM_WEIGHTS = (
    "the model has random weights (no --pretrained, no --checkpoint): its predictions and maps "
    "mean nothing; pass --pretrained or --checkpoint FILE"
)
_RANDOM_TITLE = "RANDOM WEIGHTS: class and map mean nothing"


class ExplainError(DaveError):
    """A problem the ``explain`` command reports in one line (no traceback)."""


class RandomWeightsWarning(UserWarning):
    """``explain`` was asked to explain a model that has neither pretrained nor loaded weights."""


@dataclass(frozen=True)
class ExplainOptions:
    """What ``dave-lightning explain`` was asked to do."""

    images: Sequence[Path]
    out: Path
    model: str | None = None
    checkpoint: Path | None = None
    pretrained: bool = False
    target: str = "pred"
    method: str = "dave"
    num_samples: int = 50
    num_classes: int | None = None
    model_kwargs: Mapping[str, Any] | None = None
    device: str = "cpu"
    autocast: str | None = "auto"
    """``"auto"``: bfloat16 autocast on a CUDA GPU with native bf16, else float32
    (:mod:`dave_lightning.precision`); ``None``: float32; ``"bf16"``/``"fp16"``: that autocast."""
    progress: bool | None = None
    """A progress bar per image on stderr: ``None`` shows it when stderr is a terminal."""
    signed: bool = False
    """Draw both signs of the map with a diverging colormap centred at 0."""


def _load_image(path: Path) -> Image.Image:
    try:
        return load_rgb(path)
    except BadInputError as error:
        raise ExplainError(str(error)) from None


def _unpickling_problem(error: Exception) -> str:
    """The weights-only refusal of torch.load as one plain sentence (torch's has ANSI codes)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused is None:
        return first_line(ValueError(text))
    return (
        f"it holds pickled Python objects (here {refused.group(1)}, as torch.save(model) "
        "writes), which explain never unpickles (torch.load with weights_only=True, for safety); "
        "save the weights with torch.save(model.state_dict(), path) instead"
    )


def _read_checkpoint(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        raise ExplainError(f"checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # also what weights_only=True refuses
        raise ExplainError(
            f"cannot read checkpoint {path}: UnpicklingError: {_unpickling_problem(error)}"
        ) from None
    except Exception as error:  # torch raises many types for files it cannot parse
        raise ExplainError(
            f"cannot read checkpoint {path}: not a file written by torch.save, or a damaged one "
            f"({type(error).__name__}: {first_line(error)})"
        ) from None
    if not isinstance(loaded, Mapping):
        raise ExplainError(f"checkpoint {path} holds a {type(loaded).__name__}, not a state dict")
    return loaded


def checkpoint_state(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The model weights of a Lightning checkpoint or a plain state dict.

    A Lightning checkpoint's ``state_dict`` is used; the ``model.`` prefix a LightningModule adds
    (``self.model = ...``) is removed when every key has it.

    Args:
        checkpoint: What ``torch.load`` returned.

    Returns:
        Parameter name to tensor.
    """
    state = checkpoint.get("state_dict", checkpoint)
    tensors = {key: value for key, value in state.items() if isinstance(value, Tensor)}
    for prefix in ("model.", "module.", "_orig_mod."):
        if tensors and all(key.startswith(prefix) for key in tensors):
            tensors = {key[len(prefix) :]: value for key, value in tensors.items()}
    return tensors


def load_weights(model: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load ``state`` strictly, turning a mismatch into a one-line :class:`ExplainError`."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [
        f"{key} {tuple(value.shape)} vs {tuple(expected[key].shape)}"
        for key, value in state.items()
        if key in expected and value.shape != expected[key].shape
    ]
    if missing or unexpected or reshaped:
        problems = [
            f"{len(items)} {kind} (e.g. {', '.join(items[:2])})"
            for kind, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("with another shape", reshaped),
            )
            if items
        ]
        raise ExplainError("the checkpoint does not fit the model: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def _model_spec(
    options: ExplainOptions, checkpoint: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    hyper = dict((checkpoint or {}).get("hyper_parameters", {}) or {})
    name = options.model or hyper.get("model_name")
    if not name:
        raise ExplainError("give --model NAME (or a checkpoint written by `dave-lightning demo`)")
    kwargs = dict(hyper.get("model_kwargs", {}) or {}) if options.model is None else {}
    kwargs.update(options.model_kwargs or {})
    if options.num_classes is not None:
        kwargs["num_classes"] = options.num_classes
    elif options.model is None and "num_classes" in hyper:
        kwargs["num_classes"] = hyper["num_classes"]
    return str(name), kwargs


def _infer_num_classes(state: Mapping[str, Tensor], kwargs: dict[str, Any]) -> None:
    head = state.get("head.weight")
    if "num_classes" not in kwargs and head is not None and head.dim() == 2:
        kwargs["num_classes"] = int(head.shape[0])


def build_model(options: ExplainOptions) -> tuple[nn.Module, list[str] | None]:
    """Create the timm model, load the checkpoint; return it and class names when known."""
    checkpoint = _read_checkpoint(options.checkpoint) if options.checkpoint else None
    name, kwargs = _model_spec(options, checkpoint)
    state = checkpoint_state(checkpoint) if checkpoint is not None else None
    if state is not None:
        _infer_num_classes(state, kwargs)
    model = create_model(name, pretrained=options.pretrained, **kwargs)
    if state is not None:
        load_weights(model, state)
    hyper = (checkpoint or {}).get("hyper_parameters", {}) or {}
    names = hyper.get("class_names")
    if isinstance(names, list | tuple):
        return model.eval(), [str(name) for name in names]
    return model.eval(), imagenet_class_names(model)


def imagenet_class_names(model: nn.Module) -> list[str] | None:
    """Short ImageNet class names for a timm model whose head is timm's ImageNet head.

    timm ships the ImageNet-1k (and 21k) synsets and descriptions; the subset is inferred from
    the number of classes of the head, and only trusted when the model kept the head of its
    ``pretrained_cfg`` (a head resized with ``num_classes`` is another task).

    Example:
        >>> import timm
        >>> names = imagenet_class_names(timm.create_model("vit_tiny_patch16_224"))
        >>> len(names), names[0], names[700]
        (1000, 'tench', 'paper towel')
        >>> imagenet_class_names(timm.create_model("vit_tiny_patch16_224", num_classes=6)) is None
        True
    """
    pretrained_classes = (getattr(model, "pretrained_cfg", None) or {}).get("num_classes")
    subset = timm.data.infer_imagenet_subset(model)
    if subset is None or getattr(model, "num_classes", None) != pretrained_classes:
        return None
    info = timm.data.ImageNetInfo(subset)
    return [info.index_to_description(index).split(",")[0] for index in range(info.num_classes())]


def _data_config(model: nn.Module) -> dict[str, Any]:
    """The timm preprocessing for ``model``, at the input size the model was built for."""
    overrides: dict[str, Any] = {}
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(size, tuple) and len(size) == 2:
        overrides["input_size"] = (getattr(model, "in_chans", 3), *size)
    config: dict[str, Any] = timm.data.resolve_data_config(overrides, model=model)
    return config


def preprocess(pictures: Sequence[Image.Image], model: nn.Module) -> tuple[Tensor, dict[str, Any]]:
    """Turn RGB pictures into the model's input with its own timm data configuration.

    The configuration (resize, centre crop, interpolation, mean and std) comes from the model's
    ``pretrained_cfg``, at the input size the model was built for.

    Args:
        pictures: RGB PIL images of any size.
        model: A timm model.

    Returns:
        The ``(B, 3, H, W)`` batch and the data configuration used.
    """
    config = _data_config(model)
    transform = timm.data.create_transform(**config)
    return torch.stack([transform(picture) for picture in pictures]), config


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ExplainError(f"--device {name!r}: {first_line(error)}") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ExplainError(f"--device {name}: this machine has {count} CUDA GPUs; use --device cpu")
    return device


def _to_device(model: nn.Module, name: str) -> torch.device:
    device = _device(name)
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as error:  # e.g. torch built without that backend
        raise ExplainError(f"--device {name}: {first_line(error)}") from None
    return device


def _tail_name(path: Path, parts: int) -> str:
    """The last ``parts`` path components, suffix included, as one file-name-safe stem."""
    tail = [part for part in path.parts if part != path.anchor][-parts:]
    return re.sub(r"[^\w.-]", "_", "_".join(tail).replace(".", "_"))


def output_names(images: Sequence[Path], method: str) -> list[str]:
    """One distinct PNG name per image, deterministically: ``{stem}_{method}.png``.

    Images whose stems clash get their suffix and then as many parent folders as tell them
    apart (``a/x.png`` and ``b/x.jpg`` give ``x_png_…`` and ``x_jpg_…``); names that still clash
    (the same file twice) get a counter in input order.

    Example:
        >>> output_names([Path("a/x.png"), Path("b/x.png"), Path("y.png")], "dave")
        ['a_x_png_dave.png', 'b_x_png_dave.png', 'y_dave.png']
    """
    paths = [Path(image) for image in images]
    stems = [path.stem for path in paths]
    depth = max((len(path.parts) for path in paths), default=0)
    for parts in range(1, depth + 1):
        counts = Counter(stems)
        if all(count == 1 for count in counts.values()):
            break
        stems = [
            _tail_name(path, parts) if counts[stem] > 1 else stem
            for path, stem in zip(paths, stems, strict=True)
        ]
    counts, seen = Counter(stems), Counter[str]()
    names = []
    for stem in stems:
        seen[stem] += 1
        numbered = f"{stem}_{seen[stem]}" if counts[stem] > 1 else stem
        names.append(f"{numbered}_{method}.png")
    return names


def _targets(options: ExplainOptions, logits: Tensor) -> Tensor:
    if options.target == "pred":
        return logits.argmax(dim=1)
    try:
        index = int(options.target)
    except ValueError:
        raise ExplainError(
            f"--target must be 'pred' or a class index, not {options.target!r}"
        ) from None
    if not 0 <= index < logits.shape[1]:
        raise ExplainError(f"--target {index} is outside the model's {logits.shape[1]} classes")
    return torch.full((logits.shape[0],), index, dtype=torch.long)


def _progress_bar(options: ExplainOptions, total: int) -> Any:
    """A tqdm bar on stderr, one step per image; ``disable=None``: only on a terminal."""
    from tqdm.auto import tqdm  # type: ignore[import-untyped]

    disable = None if options.progress is None else not options.progress
    return tqdm(total=total, desc=f"explain ({options.method})", unit="image", disable=disable)


def _attributor(options: ExplainOptions, model: nn.Module, device: torch.device) -> Attributor:
    method_options = {"num_samples": options.num_samples} if options.method == "dave" else {}
    dtype = autocast_dtype(options.autocast, device)
    try:
        return get_attributor(options.method, model, autocast_dtype=dtype, **method_options)
    except UnsupportedModelError as error:
        first = first_line(error).partition(";")[0].rstrip(":")
        raise ExplainError(f"{first}: {_VIT_HINT.format(method=options.method)}") from None
    except BadInputError as error:
        raise ExplainError(str(error)) from None


def _attribute(
    options: ExplainOptions, attributor: Attributor, images: Tensor, targets: Tensor
) -> Tensor:
    targets = targets.to(images.device)
    chunks = []
    try:
        with _progress_bar(options, len(images)) as bar:
            for index in range(len(images)):  # one image at a time: a bar that moves
                one = slice(index, index + 1)
                chunks.append(attributor.attribute(images[one], targets[one], image_ids=[index]))
                bar.update(1)
    except BadInputError as error:
        raise ExplainError(str(error)) from None
    return torch.cat(chunks)


def figure_title(
    image: Path, label: str, probability: float, *, random_weights: bool = False
) -> str:
    """The title written on an image's figure: file, class, probability, random-weights notice.

    Example:
        >>> print(figure_title(Path("cat.jpg"), "tabby", 0.8125, random_weights=True))
        cat.jpg: tabby (0.81)
        RANDOM WEIGHTS: class and map mean nothing
    """
    title = f"{Path(image).name}: {label} ({probability:.2f})"
    return f"{title}\n{_RANDOM_TITLE}" if random_weights else title


def has_random_weights(options: ExplainOptions) -> bool:
    """Whether the model would keep its random initialisation (no pretrained weights, no file)."""
    return not options.pretrained and options.checkpoint is None


def _check_method(method: str) -> None:
    names = available_attributors()
    if method in names:
        return
    close = difflib.get_close_matches(method, names, n=1, cutoff=0.75)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ExplainError(f"--method {method!r} is not a method{hint}; available: {', '.join(names)}")


def _check_options(options: ExplainOptions) -> None:
    """Refuse bad values in one line naming their flag, then create the output folder."""
    if options.num_samples < 1:
        raise ExplainError(f"--num-samples must be at least 1, not {options.num_samples}")
    if options.num_classes is not None and options.num_classes < 1:
        raise ExplainError(f"--num-classes must be at least 1, not {options.num_classes}")
    if options.target != "pred" and not (options.target.isdigit()):
        raise ExplainError(
            f"--target must be 'pred' or a class index (0, 1, ...), not {options.target!r}"
        )
    if options.autocast not in AUTOCAST_CHOICES:
        choices = ", ".join(AUTOCAST_FLAGS)
        raise ExplainError(f"--autocast must be one of {choices}, not {options.autocast!r}")
    _check_method(options.method)
    _device(options.device)
    try:
        writable_folder(options.out, "--out")
    except BadInputError as error:
        raise ExplainError(str(error)) from None


def explain_images(options: ExplainOptions) -> list[Path]:
    """Attribute every image and write one PNG each into ``options.out``.

    A model with random weights (neither ``pretrained`` nor ``checkpoint``) is explained all the
    same, with a :class:`RandomWeightsWarning` and a notice in every figure's title: gradient
    maps follow image edges even then, which makes them look convincing.

    Returns:
        The written files, named by :func:`output_names`.

    Raises:
        ExplainError: Before any work, for a bad value (``num_samples``, ``num_classes``,
            ``target``, ``method``, ``device``, ``autocast``), an ``out`` that is a file or not
            writable, or a missing/unreadable image; then for a checkpoint torch cannot read, a
            model timm cannot build, a checkpoint that does not fit, a target outside the
            model's classes, or a method the model does not support.
    """
    from dave_lightning.viz import attribution_figure, to_display

    _check_options(options)
    pictures = [_load_image(Path(path)) for path in options.images]
    model, class_names = build_model(options)
    device = _to_device(model, options.device)
    attributor = _attributor(options, model, device)
    images, config = preprocess(pictures, model)
    images = images.to(device)
    with torch.no_grad():
        probabilities = model(images).softmax(dim=1)
    targets = _targets(options, probabilities)
    random_weights = has_random_weights(options)
    if random_weights:  # after every check, so that an error stays the only line
        warnings.warn(_RANDOM_WEIGHTS, RandomWeightsWarning, stacklevel=2)
    maps = _attribute(options, attributor, images, targets)
    display = to_display(images, config["mean"], config["std"])
    written = []
    for index, (path, name) in enumerate(
        zip(options.images, output_names(options.images, options.method), strict=True)
    ):
        target = int(targets[index])
        label = (
            class_names[target] if class_names and target < len(class_names) else f"class {target}"
        )
        title = figure_title(
            Path(path), label, float(probabilities[index, target]), random_weights=random_weights
        )
        one = slice(index, index + 1)
        figure = attribution_figure(
            display[one],
            {options.method: maps[one]},
            [title],
            cell_inches=3.0,
            signed=options.signed,
        )
        destination = options.out / name
        figure.savefig(destination, dpi=100)
        written.append(destination)
    return written
