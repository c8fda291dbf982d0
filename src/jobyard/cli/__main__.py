"""``python -m jobyard.cli``: the same as the ``jobyard`` console script."""

from __future__ import annotations

from jobyard.cli.main import main

if __name__ == "__main__":
    main()
