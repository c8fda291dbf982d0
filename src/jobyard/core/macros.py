"""Macro levels, their resolution for a job, and macro-definition files (JSON and XML).

Levels, lowest first (each overrides the ones before)::

    account (public) -> template -> user (the submitting user) -> jobconfig -> job

Macro-definition files
----------------------
JSON (what export writes; import also accepts a bare list or a ``{name: value}`` map)::

    {"macros": [{"name": "DB_HOST", "value": "db1", "secure": false},
                {"name": "DB_PASSWORD", "value": null, "secure": true}]}

XML, the older form::

    <macrodefs>
      <macrodef name="DB_HOST" secure="false">db1</macrodef>
      <macrodef name="DB_PASSWORD" secure="true" encrypted="true">AbC...=</macrodef>
    </macrodefs>

``secure`` and ``encrypted`` default to false. An *encrypted* value (XML
``encrypted="true"``, JSON ``"encrypted": true``) was encrypted by some other
system: it is never decrypted or kept; the macro imports as its name with an empty
value (secure flag kept) and must be set again. Likewise a secure macro exported by
jobyard has no value. XML is parsed with defusedxml: a document with a DTD, an entity
declaration or an external reference is refused before any entity is resolved, so no
file or URL is ever read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from jobyard.core.errors import InvalidInput
from jobyard.core.validation import check_macros

LEVELS: tuple[str, ...] = ("account", "template", "user", "jobconfig", "job")
#: Levels whose macros live in the ``macros`` table (the job level lives on the job).
SCOPES: frozenset[str] = frozenset({"account", "template", "user", "jobconfig"})
#: How a secure value is shown wherever a value would be (previews).
MASK = "*****"
#: Largest macro-definition file accepted by import.
MAX_DEFINITION_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoredMacro:
    """One macro of a level; ``value`` of a secure one is its ciphertext (never shown)."""

    scope: str
    scope_id: int
    name: str
    value: str
    secure: bool
    updated_at: datetime | None
    updated_by: str | None


@dataclass(frozen=True, slots=True)
class MacroDef:
    """A macro definition read from a file; ``value`` is None for a secure one without value."""

    name: str
    value: str | None
    secure: bool = False


@dataclass(frozen=True, slots=True)
class MacroSources:
    """Every level's macros for one job, read in one transaction.

    Secure values are still encrypted here; ``user_name`` is whose user level applied.
    """

    account: list[StoredMacro]
    template: list[StoredMacro]
    user: list[StoredMacro]
    jobconfig_plain: dict[str, str]
    jobconfig_secure: list[StoredMacro]
    template_id: int | None
    user_name: str | None


@dataclass(frozen=True, slots=True)
class ResolvedMacro:
    """A value a job gets, and the level it came from."""

    name: str
    value: str
    level: str
    secure: bool


def resolve(
    layers: Iterable[tuple[str, Iterable[tuple[str, str, bool]]]],
) -> dict[str, ResolvedMacro]:
    """Merge ``(level, [(name, value, secure), ...])`` layers given lowest first."""
    out: dict[str, ResolvedMacro] = {}
    for level, items in layers:
        for name, value, secure in items:
            out[name] = ResolvedMacro(name=name, value=value, level=level, secure=secure)
    return out


def record_of(resolved: Mapping[str, ResolvedMacro]) -> dict[str, Any]:
    """What the job record keeps: ``{name: {"level", "secure", "value"}}``, secure -> None."""
    return {
        name: {"level": m.level, "secure": m.secure, "value": None if m.secure else m.value}
        for name, m in sorted(resolved.items())
    }


# -- macro-definition files --------------------------------------------------------------


def _truthy(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise InvalidInput(f"{what} must be true or false, got {value!r}", {"field": what})


def _definition(name: Any, value: Any, secure: bool, encrypted: bool) -> MacroDef:
    if not isinstance(name, str):
        raise InvalidInput("every macro definition needs a string 'name'", {"field": "name"})
    if encrypted:
        # Encrypted elsewhere: the value is meaningless here and is dropped unread.
        return MacroDef(name=name, value=None if secure else "", secure=secure)
    if value is None:
        return MacroDef(name=name, value=None if secure else "", secure=secure)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InvalidInput(f"macro {name!r}: the value must be a string", {"macro": name})
    return MacroDef(name=name, value=str(value), secure=secure)


def parse_json_definitions(data: bytes) -> list[MacroDef]:
    """Parse the JSON form (see the module docstring)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"not a valid JSON macro-definition file: {exc}") from None
    if isinstance(doc, dict) and "macros" in doc:
        doc = doc["macros"]
    defs: list[MacroDef] = []
    if isinstance(doc, dict):
        for name, value in doc.items():
            defs.append(_definition(name, value, False, False))
    elif isinstance(doc, list):
        for item in doc:
            if not isinstance(item, dict):
                raise InvalidInput("each entry of 'macros' must be an object with a 'name'")
            secure = _truthy(item.get("secure"), "secure")
            encrypted = _truthy(item.get("encrypted"), "encrypted")
            defs.append(_definition(item.get("name"), item.get("value"), secure, encrypted))
    else:
        raise InvalidInput('a JSON macro-definition file is {"macros": [...]}')
    return _checked(defs)


def parse_xml_definitions(data: bytes) -> list[MacroDef]:
    """Parse the XML ``<macrodefs>`` form safely: DTDs and entities are refused unread."""
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise InvalidInput(
            "the XML macro-definition file declares a DTD or entities; these are refused "
            f"(nothing was read): {type(exc).__name__}",
            {"reason": type(exc).__name__},
        ) from None
    except SafeET.ParseError as exc:
        raise InvalidInput(f"not a valid XML macro-definition file: {exc}") from None
    if root.tag != "macrodefs":
        raise InvalidInput(f"the XML root element must be <macrodefs>, not <{root.tag}>")
    defs: list[MacroDef] = []
    for element in root:
        if element.tag != "macrodef":
            raise InvalidInput(f"unexpected element <{element.tag}> in <macrodefs>")
        secure = _truthy(element.get("secure"), "secure")
        encrypted = _truthy(element.get("encrypted"), "encrypted")
        text = element.text or ""
        value = None if secure and not text else text  # a secure name without value
        defs.append(_definition(element.get("name"), value, secure, encrypted))
    return _checked(defs)


def parse_definitions(data: bytes, content_type: str | None = None) -> list[MacroDef]:
    """JSON or XML, by content type or, failing that, by the first non-blank character."""
    if len(data) > MAX_DEFINITION_BYTES:
        raise InvalidInput(f"a macro-definition file may hold {MAX_DEFINITION_BYTES} bytes")
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind.endswith("xml"):
        return parse_xml_definitions(data)
    if kind.endswith("json"):
        return parse_json_definitions(data)
    head = data.lstrip()[:1]
    return parse_xml_definitions(data) if head == b"<" else parse_json_definitions(data)


def _checked(defs: list[MacroDef]) -> list[MacroDef]:
    names = [d.name for d in defs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInput(f"macros defined twice: {', '.join(dupes)}", {"macros": dupes})
    check_macros({d.name: d.value or "" for d in defs})
    return defs


def export_json(macros: Iterable[StoredMacro | MacroDef]) -> dict[str, Any]:
    """The JSON form; secure macros carry no value."""
    return {
        "macros": [
            {"name": m.name, "value": None if m.secure else m.value, "secure": m.secure}
            for m in sorted(macros, key=lambda m: m.name)
        ]
    }


def export_xml(macros: Iterable[StoredMacro | MacroDef]) -> bytes:
    """The XML form; secure macros carry no value."""
    root = Element("macrodefs")
    for m in sorted(macros, key=lambda m: m.name):
        element = SubElement(
            root, "macrodef", {"name": m.name, "secure": "true" if m.secure else "false"}
        )
        if not m.secure:
            element.text = m.value
    body: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return body + b"\n"
