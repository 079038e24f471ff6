"""``python -m minioptim.bench``: see :mod:`minioptim.bench.cli`."""

from .cli import main

main()
