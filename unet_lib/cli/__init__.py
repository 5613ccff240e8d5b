"""The command line: ``python -m unet_lib`` (or ``unet-lib``) and its sub-commands.

Example:
    >>> from unet_lib.cli import main
    >>> main(["check", "--data", "data/generated/binary"])  # doctest: +SKIP
"""

from __future__ import annotations

from unet_lib.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
