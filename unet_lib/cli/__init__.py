"""The command line: ``python -m unet_lib`` (or ``unet-lib``) and its sub-commands, e.g.
``main(["check", "--data", "data/generated/binary"])``."""

from unet_lib.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
