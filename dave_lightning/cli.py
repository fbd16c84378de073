"""The ``dave-lightning`` command line: ``demo`` (the main job) and ``explain``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _key_value(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for convert in (int, float):
        try:
            return key, convert(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False}.get(value.lower(), value)


def _add_explain(commands: Any) -> argparse.ArgumentParser:
    from dave_lightning.precision import AUTOCAST_FLAGS
    from dave_lightning.registry import available_attributors

    parser: argparse.ArgumentParser = commands.add_parser(
        "explain",
        help="attribute your own images with a timm model",
        description="Attribute images with a timm model (optionally a checkpoint) and write "
        "one PNG per image: the image, the overlay and the predicted class.",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--model", help="timm model name (optional with a demo checkpoint)")
    parser.add_argument("--checkpoint", type=Path, help="Lightning checkpoint or state dict")
    parser.add_argument("--pretrained", action="store_true", help="load timm's pretrained weights")
    parser.add_argument("--target", default="pred", help="'pred' or a class index (default pred)")
    parser.add_argument(
        "--method",
        default="dave",
        help="attribution method (default dave): " + ", ".join(available_attributors()),
    )
    parser.add_argument("--num-samples", type=int, default=50, help="DAVE samples (default 50)")
    parser.add_argument("--num-classes", type=int, help="classes of the model's head")
    parser.add_argument(
        "--model-arg",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="extra timm.create_model argument, e.g. img_size=64 (repeatable)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--autocast",
        choices=AUTOCAST_FLAGS,
        default="auto",
        help="precision: auto (default) is bf16 on a GPU with native bf16, else float32; "
        "off is float32",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: on a terminal)"
    )
    parser.add_argument(
        "--signed", action="store_true", help="show negative evidence too (blue-white-red map)"
    )
    return parser


def _add_demo(commands: Any) -> argparse.ArgumentParser:
    from dave_lightning.demo.run import DEFAULT_MODEL, DemoConfig

    defaults = DemoConfig()
    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="fine-tune a tiny ViT on the embedded dataset with the attribution monitor",
        description="Fine-tune a small timm ViT on the embedded synthetic shapes dataset with "
        "the AttributionMonitor (DAVE and baselines), print a per-epoch table of accuracy and "
        "explanation quality, and write TensorBoard logs, summary.png and overlay figures.",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--out", type=Path, default=defaults.out, help="output folder")
    parser.add_argument(
        "--spurious",
        action="store_true",
        help="plant a shortcut: a small mark coloured by the class, inside every training and "
        "validation image away from the object; the summary adds the accuracy on test images "
        "without the mark and a verdict",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="any timm model name")
    parser.add_argument("--pretrained", action="store_true", help="start from timm's weights")
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--train-size", type=int, default=defaults.train_size)
    parser.add_argument("--val-size", type=int, default=defaults.val_size)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--methods",
        default=",".join(defaults.methods),
        help="comma-separated attribution methods (default dave,gradient)",
    )
    parser.add_argument("--num-samples", type=int, default=defaults.num_samples, help="DAVE's N")
    parser.add_argument("--num-images", type=int, default=defaults.num_images, help="probe size")
    parser.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=defaults.augment,
        help="train on random resized crops, flips and small rotations/shifts, as ViTs are "
        "trained (default on; --no-augment trains on the rendered images as they are)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each command's own (for its usage on bad flags)."""
    from dave_lightning import __version__

    parser = argparse.ArgumentParser(
        prog="dave-lightning",
        description="DAVE attributions and explanation-quality monitoring for timm ViTs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser, {"demo": _add_demo(commands), "explain": _add_explain(commands)}


def _demo(args: argparse.Namespace) -> int:
    from dave_lightning.demo.report import EpochPrinter, format_table, save_summary, verdict
    from dave_lightning.demo.run import DemoConfig, run_demo
    from dave_lightning.errors import DaveError

    try:
        config = DemoConfig(
            epochs=args.epochs,
            out=args.out,
            spurious=args.spurious,
            seed=args.seed,
            device=args.device,
            model=args.model,
            pretrained=args.pretrained,
            image_size=args.image_size,
            train_size=args.train_size,
            val_size=args.val_size,
            batch_size=args.batch_size,
            methods=tuple(filter(None, args.methods.split(","))),
            num_samples=args.num_samples,
            num_images=args.num_images,
            augment=args.augment,
            progress=not args.no_progress,
        )
        result = run_demo(config, on_epoch=EpochPrinter())
    except DaveError as error:
        print(f"dave-lightning demo: error: {error}", file=sys.stderr)
        return 2
    summary = save_summary(result, config.out / "summary.png")
    print("\nExplanation quality over epochs (probe of validation images):\n")
    print(format_table(result))
    if config.spurious:
        print()
        print("\n".join(verdict(result)))
    print(
        f"\nWrote {summary}, per-epoch figures in {config.out / 'figures'}, checkpoints in "
        f"{config.out / 'checkpoints'}."
    )
    print(f"Open the run in TensorBoard:\n    tensorboard --logdir {config.out}")
    return 0


def _show_one_line(command: str, loud: type[Warning]) -> Any:
    """A ``warnings.showwarning`` that prints ``loud`` warnings as one ``prog: warning:`` line."""
    default = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, loud):
            print(f"dave-lightning {command}: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _explain(args: argparse.Namespace) -> int:
    from dave_lightning.errors import DaveError
    from dave_lightning.explain import ExplainOptions, RandomWeightsWarning, explain_images

    options = ExplainOptions(
        images=args.images,
        out=args.out,
        model=args.model,
        checkpoint=args.checkpoint,
        pretrained=args.pretrained,
        target=args.target,
        method=args.method,
        num_samples=args.num_samples,
        num_classes=args.num_classes,
        model_kwargs=dict(args.model_arg),
        device=args.device,
        autocast=None if args.autocast == "off" else args.autocast,
        progress=False if args.no_progress else None,
        signed=args.signed,
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", RandomWeightsWarning)
            warnings.showwarning = _show_one_line("explain", RandomWeightsWarning)
            written = explain_images(options)
    except DaveError as error:
        print(f"dave-lightning explain: error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit status.
    """
    parser, commands = _build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse reports them with the top-level usage; the command's is the useful one
        command = commands.get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "explain":
        return _explain(args)
    if args.command == "demo":
        return _demo(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
