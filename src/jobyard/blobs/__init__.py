"""Blob storage for packages, logs, payload and output files."""
