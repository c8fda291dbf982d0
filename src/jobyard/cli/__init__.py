"""The ``jobyard`` command line: Typer commands over :mod:`jobyard.client`."""
