"""Command line: ``python -m unet_lib <command> ...``: ``check`` and ``generate`` here, the
workflow (train, evaluate, predict, demo) in :mod:`unet_lib.cli.workflow`. Each command is a
:data:`COMMANDS` entry; errors print one line (a traceback with ``--traceback``) and exit 1;
heavy imports wait for the command's run function. Run as a program, it keeps TensorFlow's
C++ start-up lines off the terminal (:func:`quiet_tensorflow`)."""

import argparse
import contextlib
import importlib.util
import os
import re
import sys
import tempfile

from unet_lib import __version__
from unet_lib.cli.workflow import COMMANDS as WORKFLOW_COMMANDS

__all__ = ["COMMANDS", "add_command", "build_parser", "is_tensorflow_noise", "main"]
__all__ += ["quiet_tensorflow"]


def _run_check(args: argparse.Namespace) -> int:  # a DatasetError: main lists its problems
    import warnings

    from unet_lib.data import validate_dataset

    with warnings.catch_warnings():  # the summary lists them
        warnings.simplefilter("ignore", UserWarning)
        summary = validate_dataset(args.data, labels=args.labels, channels=args.channels)
    print(summary.format())
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
        "Validate a dataset folder before training: print its summary (pairs, multi-page TIFF "
        "stacks and their pages, sizes, channels, classes), or list every problem (one per "
        "line, naming the file) and exit 1. Masks: grey values, palette PNG indices, or RGB "
        'colours mapped in dataset.json as {"labels": {"sky": [0, 128, 128], ...}}.',
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
    parser.add_argument("--version", action="version", version=f"unet_lib {__version__}")
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
    if argv is None:  # the program itself, not a call from Python: quiet TensorFlow
        quiet_tensorflow(args)
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


#: TensorFlow's start-up lines on stderr: absl's banner, C++ INFO / WARNING lines
#: (``I0000 00:00:...``: oneDNN, CUDA drivers, CPU instructions) and their continuation.
_TF_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} \d\d:\d\d:"
    r"|To enable the following instructions:"
)


def is_tensorflow_noise(line: str) -> bool:
    """Whether a stderr line is TensorFlow start-up chatter: :data:`_TF_NOISE`, or the
    ``failed call to cuInit`` error on a machine without an NVIDIA driver (with one, the
    error says why the GPU is not used, so it stays)."""
    if _TF_NOISE.match(line):
        return True
    return "failed call to cuInit" in line and not os.path.exists("/proc/driver/nvidia")


def quiet_tensorflow(args: argparse.Namespace) -> None:
    """Unless the user set ``TF_CPP_MIN_LOG_LEVEL``: sets it to 2 (TensorFlow's C++ INFO and
    WARNING lines off) and, for a command that trains or loads a model, imports TensorFlow
    and lists its devices with stderr filtered by :func:`is_tensorflow_noise`: lines printed
    before that setting applies (absl's banner, cuInit on a CPU machine). Other lines, and
    an import error, stay for the command to report."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    needs_model = args.command in ("train", "demo") or getattr(args, "model", None) is not None
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if not needs_model or backend != "tensorflow" or "tensorflow" in sys.modules:
        return
    if importlib.util.find_spec("tensorflow") is None:
        return
    with _stderr_without(is_tensorflow_noise), contextlib.suppress(Exception):
        import tensorflow as tf

        tf.config.list_physical_devices()


@contextlib.contextmanager
def _stderr_without(drop):
    """Runs the block with the process's stderr (file descriptor 2, where C++ logs go) sent to
    a temporary file, then writes back the lines that ``drop`` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines = sink.read().decode(errors="replace").splitlines()
            kept = [line for line in lines if not drop(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
