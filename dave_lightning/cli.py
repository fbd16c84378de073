"""The ``dave-lightning`` command line: ``demo`` (the main job) and ``explain``."""

from __future__ import annotations

import argparse
import sys
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


def _add_explain(commands: Any) -> None:
    parser = commands.add_parser(
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
    parser.add_argument("--method", default="dave", help="attribution method (default dave)")
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
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dave-lightning",
        description="DAVE attributions and explanation-quality monitoring for timm ViTs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("demo", help="fine-tune a tiny ViT on the embedded dataset")
    _add_explain(commands)
    return parser


def _explain(args: argparse.Namespace) -> int:
    from dave_lightning.errors import DaveError
    from dave_lightning.explain import ExplainOptions, explain_images

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
    )
    try:
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
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "explain":
        return _explain(args)
    if args.command == "demo":
        print("dave-lightning demo: the demo is not there yet (see the project's issue tracker).")
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
