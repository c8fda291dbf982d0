"""The configuration-as-code file of ``jobyard apply`` and ``jobyard export``.

::

    packages:                 # optional: local folders/files to push, by a local name
      etl: {path: ./etl}      # relative to the YAML file
    templates:                # optional; see jobyard.service.apply.templatespec
      - name: acme
        package: etl
        entrypoint: main
    jobconfigs:
      - name: nightly-etl     # unique key
        package: etl          # or package_id: 12
        entrypoint: main      # or command: ["sh", "-c", "echo hi"]
        template: acme        # or template_id: 3; inherits package/entrypoint not set here
        macros: {TARGET: prod}
        parameters: [DAY]     # macro names callers with only execute may set per run
        max_concurrent: 1
        timeout: 30           # minutes, 0 = none
        success_exit_codes: [0]
        enabled: true
        description: "..."
        pool: default
        labels: {gpu: "1"}    # worker labels its jobs require (default none: any worker)
        retention:            # optional; a field left out: the server's retention setting
          max_jobs: 1000      # newest ended jobs kept (0 = no limit)
          max_age_days: 7     # ended jobs older than this go (0 = keep forever)
        retries: 2            # retry policy: new jobs repeating one that ended in retry_on
        retry_delay_seconds: 30   # the n-th retry waits delay * backoff ** (n-1)
        retry_backoff: 2
        retry_on: [FAILED]    # ERROR and/or FAILED
        schedules:            # optional; see jobyard.service.apply.schedulespec
          - cron: "0 0 2 * * ?"
            timezone: Europe/Berlin
          - every: 1h30m

The file is the whole truth about the jobconfigs it names: a field left out means its
default, so deleting a line from the file resets that field on the next apply.
The same goes for ``schedules`` and ``retention``, with one exception: a jobconfig
without the key keeps the schedules (retention overrides) it has; with the key, the
schedules not listed are deleted (the retention fields not given become null: the
server's settings).
Validation reports every problem at once, each with ``file:line``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from jobyard.core.errors import InvalidInput
from jobyard.core.labels import checked_labels
from jobyard.core.macros import check_parameter_names
from jobyard.core.models import JobConfigSpec
from jobyard.core.validation import EXECUTION_MACROS, MACRO_RE, NAME_RE
from jobyard.service.apply.nodes import (
    Problem,
    duplicate_keys,
    key_node,
    line_at,
    where_text,
)
from jobyard.service.apply.nodes import (
    SpecError as SpecError,
)
from jobyard.service.apply.schedulespec import (
    ScheduleDecl,
    default_name,
    every_minutes,
    normalise_cron,
    start_at_text,
)
from jobyard.service.apply.templatespec import (
    TemplateDecl,
    TemplateModel,
    templates_of,
)

#: A package's content hash as the server writes it.
SHA256_RE = re.compile(r"[0-9a-f]{64}")

#: The writable fields of a jobconfig, in the order files show them.
SPEC_FIELDS: tuple[str, ...] = (
    "name",
    "description",
    "package_id",
    "entrypoint",
    "command",
    "macros",
    "parameters",
    "max_concurrent",
    "timeout",
    "success_exit_codes",
    "enabled",
    "pool",
    "labels",
    "template_id",
    "retention",
    "retries",
    "retry_delay_seconds",
    "retry_backoff",
    "retry_on",
)

#: Retry policy fields with their defaults: an export leaves out those at the default.
RETRY_DEFAULTS: dict[str, Any] = {
    "retries": 0,
    "retry_delay_seconds": 30.0,
    "retry_backoff": 2.0,
    "retry_on": ["FAILED"],
}

#: ``retention`` of a jobconfig that sets no override (the server's settings apply).
NO_RETENTION: dict[str, Any] = {"max_age_days": None, "max_jobs": None}


def full_retention(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Both retention fields, None where not set: a file's whole truth about them."""
    value = value or {}
    return {k: value.get(k) for k in NO_RETENTION}


def spec_defaults() -> dict[str, Any]:
    """The value each writable field takes when a file leaves it out (from ``JobConfigSpec``)."""
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(JobConfigSpec):
        if f.name.startswith("retention_"):
            continue  # files and the API nest them as ``retention``
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


# -- schema ---------------------------------------------------------------------------


def _macro_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        raise ValueError("macro values are strings: quote it (e.g. 'true', '')")
    if isinstance(value, int | float):
        return str(value)
    return value


def _macro_name(value: str) -> str:
    if not MACRO_RE.match(value):
        raise ValueError(
            f"macro name {value!r} is not a valid environment variable name "
            "(ASCII letters, digits and _, not starting with a digit)"
        )
    if value in EXECUTION_MACROS:
        raise ValueError(f"macro {value!r} is set by jobyard for every job and cannot be set")
    return value


def _parameters(value: list[str]) -> list[str]:
    try:
        return check_parameter_names(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use 1-128 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def _sha256(value: str | None) -> str | None:
    if value is not None and not SHA256_RE.fullmatch(value):
        raise ValueError(f"sha256 {value!r} is not 64 lowercase hex digits")
    return value


MacroValue = Annotated[str, BeforeValidator(_macro_value)]
MacroName = Annotated[str, AfterValidator(_macro_name)]
Name = Annotated[str, AfterValidator(_name)]
ExitCode = Annotated[int, Field(ge=0, le=255)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PackageModel(_Strict):
    """``packages.NAME``: a local file or folder to push (``path``), or a package already
    on the server (``sha256``); ``jobyard apply`` pushes a path and sends its sha256."""

    path: str | None = Field(default=None, min_length=1)
    sha256: Annotated[str | None, AfterValidator(_sha256)] = None

    @model_validator(mode="after")
    def _somewhere(self) -> PackageModel:
        if self.path is None and self.sha256 is None:
            raise ValueError(
                "give the package's `path` (a local file or folder) or the `sha256` of a "
                "package already pushed"
            )
        return self


def _every(value: Any) -> Any:
    return None if value is None else every_minutes(value)


Every = Annotated[int | None, BeforeValidator(_every)]
StartAt = Annotated[str | None, BeforeValidator(start_at_text)]


class ScheduleModel(_Strict):
    """One item of a jobconfig's ``schedules``: a cron expression or an interval."""

    name: str | None = Field(default=None, min_length=1)
    cron: str | None = Field(default=None, min_length=1)
    every: Every = None
    start_at: StartAt = None
    timezone: str | None = Field(default=None, min_length=1)
    misfire_policy: Literal["fire_once", "skip"] | None = None
    paused: bool | None = None
    macros: dict[MacroName, MacroValue] | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleModel:
        if (self.cron is None) == (self.every is None):
            raise ValueError(
                "give exactly one of `cron` (a Quartz expression) and `every` (an interval)"
            )
        return self

    def decl(self, line: int | None) -> ScheduleDecl:
        """The parsed form, defaults filled in (the name as the server would derive it)."""
        cron = normalise_cron(self.cron) if self.cron is not None else None
        name = (self.name or "").strip() or default_name(cron, self.every)
        given = self.model_dump(
            exclude_none=True, include={"timezone", "misfire_policy", "paused", "description"}
        )
        return ScheduleDecl(
            name=name,
            cron=cron,
            interval_minutes=self.every if cron is None else None,
            start_at=self.start_at,
            macros=dict(self.macros or {}),
            line=line,
            **given,
        )


class RetentionModel(_Strict):
    """``retention`` of a jobconfig: overrides of the server's retention settings."""

    max_age_days: float | None = Field(default=None, ge=0)
    max_jobs: int | None = Field(default=None, ge=0)


def _statuses(value: list[str]) -> list[str]:
    """Each status once, sorted: the order the server keeps (so plans compare equal)."""
    return sorted(set(value))


class JobConfigModel(_Strict):
    """One item of ``jobconfigs``; unset fields take the defaults of ``JobConfigSpec``."""

    name: Name
    package: str | None = Field(default=None, min_length=1)
    package_id: int | None = Field(default=None, ge=1)
    template: str | None = Field(default=None, min_length=1)
    template_id: int | None = Field(default=None, ge=1)
    entrypoint: str | None = Field(default=None, min_length=1)
    command: list[str] | None = Field(default=None, min_length=1)
    macros: dict[MacroName, MacroValue] | None = None
    parameters: Annotated[list[str], AfterValidator(_parameters)] | None = None
    max_concurrent: int | None = Field(default=None, ge=0)
    timeout: int | None = Field(default=None, ge=0)
    success_exit_codes: list[ExitCode] | None = Field(default=None, min_length=1)
    enabled: bool | None = None
    description: str | None = None
    pool: str | None = Field(default=None, min_length=1)
    labels: Annotated[dict[str, str | int | bool], AfterValidator(checked_labels)] | None = None
    retention: RetentionModel | None = None
    retries: int | None = Field(default=None, ge=0, le=100)
    retry_delay_seconds: float | None = Field(default=None, ge=0, le=31_536_000)
    retry_backoff: float | None = Field(default=None, ge=1, le=100)
    retry_on: Annotated[list[Literal["ERROR", "FAILED"]], AfterValidator(_statuses)] | None = Field(
        default=None, min_length=1
    )
    schedules: list[ScheduleModel] | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> JobConfigModel:
        if self.package is not None and self.package_id is not None:
            raise ValueError("give either `package` or `package_id`, not both")
        if self.template is not None and self.template_id is not None:
            raise ValueError("give either `template` or `template_id`, not both")
        if self.entrypoint is not None and self.command is not None:
            raise ValueError("give either `entrypoint` or `command`, not both")
        packaged = self.package is not None or self.package_id is not None
        templated = self.template is not None or self.template_id is not None
        if self.entrypoint is not None and not packaged and not templated:
            raise ValueError(
                "`entrypoint` needs a package (`package` or `package_id`) or a template"
            )
        return self


class ApplyFileModel(_Strict):
    """The whole file."""

    packages: dict[str, PackageModel] | None = None
    templates: list[TemplateModel] | None = None
    jobconfigs: list[JobConfigModel] | None = None


def document_schema() -> dict[str, Any]:
    """The JSON Schema of a document (what ``GET /api/v1/apply`` answers)."""
    return ApplyFileModel.model_json_schema()


# -- parsed form ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackageDecl:
    """A package of the file: its local name, the path to push (resolved) and/or the
    sha256 of a package already on the server."""

    name: str
    path: Path | None
    line: int | None = None
    sha256: str | None = None
    #: ``path`` as the document wrote it (before resolving against the file's folder).
    given_path: str | None = None


@dataclass(frozen=True, slots=True)
class JobConfigDecl:
    """A jobconfig of the file, defaults filled in; ``package`` still to be resolved to an id."""

    name: str
    spec: dict[str, Any]
    package: str | None = None
    line: int | None = None
    #: ``None``: the file has no ``schedules`` key, so the server's are left alone.
    schedules: tuple[ScheduleDecl, ...] | None = None
    #: A template by name (of the file or of the server), still to be resolved to an id.
    template: str | None = None


@dataclass(frozen=True, slots=True)
class ApplyFile:
    """A validated apply file."""

    source: str
    packages: dict[str, PackageDecl]
    jobconfigs: list[JobConfigDecl]
    templates: list[TemplateDecl] = dataclasses.field(default_factory=list)


def load_apply_file(path: Path, *, check_paths: bool = True) -> ApplyFile:
    """Read and validate an apply file; package paths are relative to its folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(str(path), [Problem(exc.strerror or str(exc))]) from exc
    except UnicodeDecodeError as exc:
        raise SpecError(str(path), [Problem(f"not UTF-8 text: {exc.reason}")]) from exc
    return parse_apply_text(text, source=str(path), base=path.parent, check_paths=check_paths)


def parse_apply_text(
    text: str, *, source: str = "<string>", base: Path | None = None, check_paths: bool = False
) -> ApplyFile:
    """Validate the text of an apply file; raise :class:`SpecError` listing every problem."""
    data, node = _load_yaml(text, source)
    return _validated(data, node, source, base or Path("."), check_paths)


def parse_apply_data(data: Any, *, source: str = "<request>") -> ApplyFile:
    """Validate a document already decoded (a JSON body): problems name the path, no line.

    Package paths cannot be read here (the server does not read the caller's files).
    """
    return _validated(data, None, source, Path("."), False)


def _load_yaml(text: str, source: str) -> tuple[Any, yaml.Node]:
    """The decoded document and its node tree (for lines); duplicate keys are problems."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError(source, [Problem("the file is empty: nothing to apply")])
        problems = list(duplicate_keys(node))
        if problems:
            raise SpecError(source, problems)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        message = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise SpecError(source, [Problem(f"invalid YAML: {message}", line)]) from exc
    except yaml.YAMLError as exc:
        raise SpecError(source, [Problem(f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    return data, node


def _validated(
    data: Any, node: yaml.Node | None, source: str, base: Path, check_paths: bool
) -> ApplyFile:
    if not isinstance(data, dict):
        raise SpecError(
            source,
            [Problem("the file must be a mapping of `packages`, `templates` and `jobconfigs`", 1)],
        )
    try:
        model = ApplyFileModel.model_validate(data)
    except ValidationError as exc:
        problems = sorted(_problems_of(exc, node), key=lambda p: p.line or 0)
        raise SpecError(source, problems) from exc
    return _to_apply_file(model, node, source, base, check_paths)


def _to_apply_file(
    model: ApplyFileModel, root: yaml.Node | None, source: str, base: Path, check_paths: bool
) -> ApplyFile:
    problems: list[Problem] = []
    if model.jobconfigs is None and model.packages is None and model.templates is None:
        problems.append(Problem("nothing to apply: no `jobconfigs`, `templates` or `packages`", 1))

    packages: dict[str, PackageDecl] = {}
    for name, pkg in (model.packages or {}).items():
        line = line_at(root, ("packages", name))
        path: Path | None = None
        if pkg.path is not None:
            path = Path(pkg.path).expanduser()
            if not path.is_absolute():
                path = base / path
            if check_paths and not path.exists():
                problems.append(Problem(f"path {pkg.path!r} does not exist ({path})", line, name))
        packages[name] = PackageDecl(name, path, line, pkg.sha256, pkg.path)

    templates = templates_of(model.templates, root, set(packages), problems)
    defaults = spec_defaults()
    jobconfigs: list[JobConfigDecl] = []
    seen: dict[str, int | None] = {}
    for index, jc in enumerate(model.jobconfigs or []):
        line = line_at(root, ("jobconfigs", index))
        where = f"jobconfigs[{index}]"
        if jc.name in seen:
            first = seen[jc.name]
            problems.append(
                Problem(
                    f"duplicate jobconfig name {jc.name!r} (first at line {first})", line, where
                )
            )
        seen[jc.name] = line
        if jc.package is not None and jc.package not in packages:
            known = ", ".join(sorted(packages)) or "none declared"
            problems.append(
                Problem(
                    f"unknown package {jc.package!r} (packages: {known})",
                    line_at(root, ("jobconfigs", index, "package")),
                    where,
                )
            )
        values = jc.model_dump(exclude_none=True, exclude={"package", "schedules", "template"})
        spec = {f: values.get(f, defaults.get(f)) for f in SPEC_FIELDS}
        spec.pop("retention", None)
        if "retention" in jc.model_fields_set:
            spec["retention"] = full_retention(values.get("retention"))
        schedules = _schedules(jc, root, index, problems)
        decl = JobConfigDecl(jc.name, spec, jc.package, line, schedules, jc.template)
        jobconfigs.append(decl)
    if problems:
        raise SpecError(source, sorted(problems, key=lambda p: p.line or 0))
    return ApplyFile(source, packages, jobconfigs, templates)


def _schedules(
    jc: JobConfigModel, root: yaml.Node | None, index: int, problems: list[Problem]
) -> tuple[ScheduleDecl, ...] | None:
    """The jobconfig's schedules (``schedules:`` with no items means none); names unique."""
    if "schedules" not in jc.model_fields_set:
        return None
    decls: list[ScheduleDecl] = []
    seen: dict[str, int | None] = {}
    for position, model in enumerate(jc.schedules or []):
        line = line_at(root, ("jobconfigs", index, "schedules", position))
        decl = model.decl(line)
        if decl.name in seen:
            problems.append(
                Problem(
                    f"duplicate schedule name {decl.name!r} (first at line {seen[decl.name]}): "
                    "give each schedule of a jobconfig its own `name`",
                    line,
                    f"jobconfigs[{index}].schedules[{position}]",
                )
            )
        seen[decl.name] = line
        decls.append(decl)
    return tuple(decls)


def _problems_of(exc: ValidationError, root: yaml.Node | None) -> Iterable[Problem]:
    for error in exc.errors(include_url=False):
        loc = [p for p in error["loc"] if p != "[key]"]
        kind = error["type"]
        if kind == "extra_forbidden":
            key = key_node(root, loc)
            line = key.start_mark.line + 1 if key else line_at(root, loc)
            allowed = _allowed_keys(loc)
            yield Problem(
                f"unknown key {loc[-1]!r} (allowed: {', '.join(allowed)})",
                line,
                where_text(loc[:-1]),
            )
        elif kind == "missing":
            yield Problem(
                f"missing required key {loc[-1]!r}", line_at(root, loc[:-1]), where_text(loc[:-1])
            )
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            if kind.endswith("_type") or kind.endswith("_parsing"):
                message += f", got {error['input']!r}"
            yield Problem(message, line_at(root, loc), where_text(loc))


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    depth = len(loc)
    if depth == 1:
        return list(ApplyFileModel.model_fields)
    if loc[0] == "jobconfigs" and depth > 4 and loc[2] == "schedules":
        return list(ScheduleModel.model_fields)
    if loc[0] == "jobconfigs" and depth > 3 and loc[2] == "retention":
        return list(RetentionModel.model_fields)
    if loc[0] == "jobconfigs":
        return list(JobConfigModel.model_fields)
    if loc[0] == "templates":
        return list(TemplateModel.model_fields)
    return list(PackageModel.model_fields)
