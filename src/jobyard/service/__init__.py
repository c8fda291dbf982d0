"""Use cases: each API route and CLI command calls one function here."""
