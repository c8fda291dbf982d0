"""The REST API: a thin FastAPI layer over :mod:`jobyard.service`."""
