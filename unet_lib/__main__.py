"""``python -m unet_lib``: the command line (see :mod:`unet_lib.cli.parser`)."""

from unet_lib.cli import main

raise SystemExit(main())
