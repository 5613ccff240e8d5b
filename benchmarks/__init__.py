"""Benchmarks of unet_lib: speed, memory and quality, each printed against a baseline
measured in the same run. Run them as modules from the repository root, e.g.
``python -m benchmarks.run --quick`` (see benchmarks/README.md)."""
