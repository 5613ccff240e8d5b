"""Command line: ``python -m unet_lib <command> ...``: ``check`` and ``generate`` here, the
workflow (train, evaluate, predict, demo) in :mod:`unet_lib.cli.workflow`. Each command is a
:data:`COMMANDS` entry; errors print one line (a traceback with ``--traceback``) and exit 1;
heavy imports wait for the command's run function."""

import argparse
import os
import sys

from unet_lib.cli.workflow import COMMANDS as WORKFLOW_COMMANDS

__all__ = ["COMMANDS", "add_command", "build_parser", "main"]


def _run_check(args: argparse.Namespace) -> int:  # a DatasetError: main lists its problems
    from unet_lib.data import validate_dataset

    print(validate_dataset(args.data, labels=args.labels, channels=args.channels).format())
    return 0


def _run_generate(args: argparse.Namespace) -> int:
    import time

    from unet_lib.data import default_data_dir, make_synthetic_dataset

    out = args.out if args.out is not None else default_data_dir(args.kind)
    start = time.perf_counter()
    path = make_synthetic_dataset(
        out, kind=args.kind, num_images=args.num_images, size=args.size, seed=args.seed,
        overwrite=args.overwrite,
    )  # fmt: skip
    print(
        f"wrote {args.num_images} {args.kind} image/mask pairs of {args.size}x{args.size} "
        f"(seed {args.seed}) to {path} in {time.perf_counter() - start:.1f} s"
    )
    return 0


#: name -> (one-line help, description, ``{flag: add_argument settings}`` or a function that
#: returns them, run(args) -> exit status). Add new commands here.
COMMANDS = {
    "check": (
        "validate a dataset folder (images/, masks/, optional dataset.json)",
        "Validate a dataset folder before training: print its summary, or list every problem "
        "(one per line, naming the file) and exit 1.",
        {
            "--data": dict(required=True, metavar="DIR", help="folder with images/ and masks/"),
            "--labels": dict(
                metavar="JSON_OR_FILE",
                help="label mapping overriding DIR/dataset.json: a JSON string such as "
                '\'{"labels": {"background": 255, "membrane": 0}}\' or the path of a JSON file',
            ),
            "--channels": dict(
                type=int, choices=(1, 3), help="convert every image to 1 (grey) or 3 (RGB)"
            ),
        },
        _run_check,
    ),
    "generate": (
        "write the built-in synthetic dataset",
        "Write a synthetic dataset (images/, masks/, dataset.json). Same seed, same files.",
        {
            "--out": dict(
                metavar="DIR",
                help="folder to create (default: data/generated/<kind>_v<version>, or under "
                "$UNET_DATA_DIR)",
            ),
            "--kind": dict(
                choices=("binary", "multiclass"),
                default="binary",
                help="binary: membranes (grey); multiclass: nuclei/rods/granules (RGB)",
            ),
            "--num-images": dict(type=int, default=48, metavar="N", help="default 48"),
            "--size": dict(type=int, default=128, metavar="S", help="image side, default 128"),
            "--seed": dict(type=int, default=0, metavar="S", help="default 0"),
            "--overwrite": dict(action="store_true", help="replace an existing generated set"),
        },
        _run_generate,
    ),
    **WORKFLOW_COMMANDS,
}


def add_command(sub, name: str, help: str, description: str, flags: dict):
    """A sub-command's parser with ``flags``: ``{flag: add_argument settings}``; flags whose
    settings name the same ``group`` exclude each other (one is required if it starts with
    ``!``)."""
    parser, groups = sub.add_parser(name, help=help, description=description), {}
    for flag, kwargs in flags.items():
        group = kwargs.get("group")
        if group and group not in groups:
            groups[group] = parser.add_mutually_exclusive_group(required=group.startswith("!"))
        settings = {k: v for k, v in kwargs.items() if k != "group"}
        groups.get(group, parser).add_argument(flag, **settings)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="python -m unet_lib",
        description="U-Net segmentation: check datasets, generate the built-in data, train, "
        "evaluate, predict, or run the whole demo.",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the full Python traceback on errors (or set UNET_TRACEBACK=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help, description, flags, run) in COMMANDS.items():
        flags = flags() if callable(flags) else flags
        add_command(sub, name, help, description, flags).set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status: ``0`` success, ``1`` the command failed
    (problems printed on stderr), ``2`` a usage error. ``argv`` excludes the program name
    (``None``: ``sys.argv[1:]``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or a usage error: argparse already printed
        return e.code if isinstance(e.code, int) else 2
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # one clear line unless a traceback is asked for
        if args.traceback or os.environ.get("UNET_TRACEBACK") == "1":
            raise
        text = f"error: {error}"
        if hasattr(error, "problems"):  # a DatasetError: its header, then one problem a line
            text = "\n".join([getattr(error, "header", "dataset problems:"), *error.problems])
        print(text, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
