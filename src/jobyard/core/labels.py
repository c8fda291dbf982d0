"""Worker labels, and the labels a job requires of the worker that runs it.

A worker is started with ``key=value`` labels (``gpu=1``, ``zone=a``); a jobconfig (or
its template) may require some. A job copies what it requires when it is submitted, and
only a worker of its pool that has every required label (same key, same value) may
claim it. Keys and values are short plain words, so they read the same in a flag, a
YAML file, a form line and a JSON path on the store's side (no quoting anywhere).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from jobyard.core.errors import InvalidInput

#: A label key: starts with a letter or digit; letters, digits, ``_ . - /`` after it.
KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$")
#: A label value: letters, digits and ``_ . - : /`` (no ``=``, ``,`` or spaces).
VALUE = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")
#: At most this many labels on one jobconfig, template or worker.
MAX_LABELS = 32


def validate_labels(labels: object, *, field: str = "labels") -> dict[str, str]:
    """``labels`` as a plain ``{key: value}`` dict, or ``InvalidInput`` saying what to fix.

    ``None`` is the empty dict (nothing required).
    """
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidInput(f"{field} must be an object of key: value strings", {"field": field})
    if len(labels) > MAX_LABELS:
        raise InvalidInput(
            f"{field} may hold at most {MAX_LABELS} labels", {"field": field, "count": len(labels)}
        )
    found: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not KEY.match(key):
            raise InvalidInput(
                f"label key {key!r} is invalid: use letters, digits and _ . - / "
                "(starting with a letter or digit, at most 63 characters)",
                {"field": field, "label": str(key)},
            )
        if isinstance(value, bool):  # YAML reads gpu: true as a boolean
            value = str(value).lower()
        elif isinstance(value, int | float):  # and gpu: 1 as a number
            value = str(value)
        if not isinstance(value, str) or not VALUE.match(value):
            raise InvalidInput(
                f"label {key!r} has an invalid value {value!r}: use 1 to 100 letters, digits "
                "and _ . - : /",
                {"field": field, "label": key},
            )
        found[key] = value
    return dict(sorted(found.items()))


def parse_labels(text: str, *, field: str = "labels") -> dict[str, str]:
    """``k=v`` pairs separated by commas or new lines (``gpu=1,zone=a``), validated.

    Blank entries are skipped; a key given twice is an error (it is surely a typo).
    """
    found: dict[str, str] = {}
    for raw in re.split(r"[,\n]", text):
        entry = raw.strip()
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep:
            raise InvalidInput(f"label {entry!r} must read key=value", {"field": field})
        key, value = key.strip(), value.strip()
        if key in found:
            raise InvalidInput(f"label {key!r} is given twice", {"field": field, "label": key})
        found[key] = value
    return validate_labels(found, field=field)


def format_labels(labels: Mapping[str, str] | None, sep: str = ",") -> str:
    """``k=v`` pairs in key order (the inverse of :func:`parse_labels`)."""
    return sep.join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def stored_labels(labels: Mapping[str, str] | None) -> dict[str, str] | None:
    """What the store keeps: None for no labels, so a claim tests ``IS NULL`` only."""
    return dict(sorted(labels.items())) if labels else None


def missing(required: Mapping[str, str] | None, have: Mapping[str, str]) -> dict[str, str]:
    """The required labels ``have`` lacks (or holds with another value)."""
    return {k: v for k, v in (required or {}).items() if have.get(k) != v}


def satisfied_by(required: Mapping[str, str] | None, workers: Iterable[Mapping[str, str]]) -> bool:
    """Whether one of ``workers`` (their labels) has every required label."""
    return any(not missing(required, have) for have in workers)


def checked_labels(value: Mapping[str, object]) -> dict[str, str]:
    """:func:`validate_labels` for a schema validator: ``ValueError`` with the message."""
    try:
        return validate_labels(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None
