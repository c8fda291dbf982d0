"""Unit tests of the CLI (no server: a small in-process fake of the API)."""
