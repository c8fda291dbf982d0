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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from jobyard.core.errors import InvalidInput
from jobyard.core.validation import EXECUTION_MACROS, MACRO_RE, check_macros

LEVELS: tuple[str, ...] = ("account", "template", "user", "jobconfig", "job")
#: Levels whose macros live in the ``macros`` table (the job level lives on the job).
SCOPES: frozenset[str] = frozenset({"account", "template", "user", "jobconfig"})
#: How a secure value is shown wherever a value would be (previews).
MASK = "*****"
#: Largest macro-definition file accepted by import.
MAX_DEFINITION_BYTES = 1024 * 1024

#: Names that steer how a program is found, loaded or interpreted: which binaries,
#: shared libraries, modules and start-up files run, and how names resolve. Whoever
#: sets one decides what code runs, so they are refused as **run-time** macros (the
#: ``macros`` of a run, for everyone: owners and admins too). A jobconfig or template
#: may still set them: that is the decision of those who may edit it. ``TMPDIR`` and
#: the like are not here: they say where to write, not what to run.
LOADER_MACROS: frozenset[str] = frozenset(
    {
        # program lookup and the home folder (user site-packages, rc files live there)
        "PATH",
        "HOME",
        "CDPATH",
        # glibc: character sets, locales, messages, tunables, name resolution
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "GLIBC_TUNABLES",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "RESOLV_HOST_CONF",
        # shells
        "BASH_ENV",
        "ENV",
        "IFS",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        # Python
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "PYTHONUSERBASE",
        "PYTHONEXECUTABLE",
        "PYTHONBREAKPOINT",
        "PYTHONPLATLIBDIR",
        # Perl, Ruby, Node.js, Lua, Tcl, PHP, R
        "PERL5LIB",
        "PERL5OPT",
        "PERLLIB",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        "NODE_OPTIONS",
        "NODE_PATH",
        "LUA_INIT",
        "LUA_PATH",
        "LUA_CPATH",
        "TCLLIBPATH",
        "PHPRC",
        "PHP_INI_SCAN_DIR",
        "R_PROFILE",
        "R_PROFILE_USER",
        "R_ENVIRON",
        "R_ENVIRON_USER",
        # Java
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "CLASSPATH",
        # OpenSSL loads engines and providers named by its configuration
        "OPENSSL_CONF",
        "OPENSSL_ENGINES",
        "OPENSSL_MODULES",
        # git runs helpers named by these
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_CONFIG_GLOBAL",
    }
)
#: Whole families: the dynamic loader (``LD_PRELOAD``, ``LD_LIBRARY_PATH``, ``LD_AUDIT``
#: ...) and its macOS twin.
LOADER_PREFIXES: tuple[str, ...] = ("LD_", "DYLD_")
#: Most names a jobconfig may declare as ``parameters``.
MAX_PARAMETERS = 200


def steers_loader(name: str) -> bool:
    """Whether ``name`` is one of :data:`LOADER_MACROS` or of the :data:`LOADER_PREFIXES`."""
    return name in LOADER_MACROS or name.startswith(LOADER_PREFIXES)


def check_parameter_names(names: Iterable[str], field: str = "parameters") -> list[str]:
    """The ``parameters`` of a jobconfig, checked: macro names a caller with only
    ``execute`` may set at run time. Sorted, without duplicates.

    Execution macros and loader names can never be set at run time, so declaring one
    would be a promise the server does not keep: refused (422) saying so.
    """
    out = sorted(set(names))
    if len(out) > MAX_PARAMETERS:
        raise InvalidInput(
            f"a jobconfig may declare at most {MAX_PARAMETERS} parameters, got {len(out)}",
            {"field": field, "limit": MAX_PARAMETERS},
        )
    for name in out:
        if not MACRO_RE.match(name):
            raise InvalidInput(
                f"invalid parameter {name!r}: parameters are macro names (ASCII letters, digits "
                "and '_', not starting with a digit)",
                {"field": field, "macro": name},
            )
        if name in EXECUTION_MACROS:
            raise InvalidInput(
                f"parameter {name!r} is an execution macro set by jobyard for every job: "
                "it cannot be a parameter",
                {"field": field, "macro": name},
            )
        if steers_loader(name):
            raise InvalidInput(
                f"parameter {name!r} steers how programs are found and loaded, so it is "
                "never accepted at run time: set it as a jobconfig macro instead",
                {"field": field, "macro": name},
            )
    return out


def run_macros_size(macros: Mapping[str, str]) -> int:
    """What run-time macros weigh against the byte cap: names and values, UTF-8."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in macros.items())


def check_run_macro_limits(macros: Mapping[str, str], *, max_count: int, max_bytes: int) -> None:
    """Run-time macros are capped by count and total bytes (422 beyond, naming the cap)."""
    if len(macros) > max_count:
        raise InvalidInput(
            f"too many run-time macros: {len(macros)} given, at most {max_count} allowed "
            "(set lasting values on the jobconfig instead)",
            {"field": "macros", "count": len(macros), "limit": max_count},
        )
    size = run_macros_size(macros)
    if size > max_bytes:
        raise InvalidInput(
            f"run-time macros too large: {size} bytes of names and values given, at most "
            f"{max_bytes} bytes allowed (pass big inputs as a payload file instead)",
            {"field": "macros", "bytes": size, "limit": max_bytes},
        )


def check_no_loader_names(macros: Iterable[str], where: str = "the jobconfig") -> None:
    """Refuse (422) run-time macros that steer loaders or interpreters (for everyone)."""
    bad = sorted(n for n in macros if steers_loader(n))
    if bad:
        names = ", ".join(bad)
        raise InvalidInput(
            f"{names}: names that steer how programs are found, loaded or interpreted "
            f"cannot be set at run time; if the program needs a value, set it on {where} "
            "(someone who may edit it decides)",
            {"field": "macros", "macros": bad},
        )


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


def layer_sources(
    sources: MacroSources,
    job_macros: Mapping[str, str],
    reveal: Callable[[str, StoredMacro], str],
) -> dict[str, ResolvedMacro]:
    """Merge a job's macro levels lowest first (account, template, user, jobconfig, job).

    ``reveal(level, macro)`` gives a secure macro's value: its plaintext for the worker,
    a mask for previews. A jobconfig macro stored secure hides its plain twin.
    """

    def table(level: str, rows: list[StoredMacro]) -> list[tuple[str, str, bool]]:
        return [(m.name, reveal(level, m) if m.secure else m.value, m.secure) for m in rows]

    secure_names = {m.name for m in sources.jobconfig_secure}
    jobconfig = [(n, v, False) for n, v in sources.jobconfig_plain.items() if n not in secure_names]
    return resolve(
        [
            ("account", table("account", sources.account)),
            ("template", table("template", sources.template)),
            ("user", table("user", sources.user)),
            ("jobconfig", jobconfig + table("jobconfig", sources.jobconfig_secure)),
            ("job", [(n, v, False) for n, v in job_macros.items()]),
        ]
    )


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
