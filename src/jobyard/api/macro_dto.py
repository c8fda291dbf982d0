"""Bodies of the macro routes. A secure macro never carries its value out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from jobyard.core.macros import ResolvedMacro, StoredMacro

MacroValue = Annotated[str, StringConstraints(max_length=10_000)]


class MacroIn(BaseModel):
    """Set a macro. A secure macro cannot become non-secure (delete and re-create it)."""

    model_config = ConfigDict(extra="forbid")

    value: MacroValue = Field(description="The value; write-only when secure.")
    secure: bool = Field(default=False, description="Encrypt at rest and never show it again.")


class MacroOut(BaseModel):
    """A macro of one level; ``value`` is null for a secure macro."""

    name: str
    value: str | None
    secure: bool
    #: The stored record calls it ``scope``.
    level: str = Field(validation_alias=AliasChoices("level", "scope"))
    updated_at: datetime | None = None
    updated_by: str | None = None

    @model_validator(mode="after")
    def _hide_secure_value(self) -> MacroOut:
        """A secure macro is listed by name only: its (encrypted) value never leaves."""
        if self.secure:
            self.value = None
        return self

    @classmethod
    def of(cls, m: StoredMacro) -> MacroOut:
        """Build from the stored record, hiding a secure value."""
        return cls.model_validate(m, from_attributes=True)


class MacroList(BaseModel):
    """The macros of one level, by name."""

    items: list[MacroOut]

    @classmethod
    def of(cls, rows: list[StoredMacro]) -> MacroList:
        """Build from stored records."""
        return cls(items=[MacroOut.of(m) for m in rows])


class MacroDefOut(BaseModel):
    """One entry of an exported macro-definition file (no value when secure)."""

    name: str
    value: str | None
    secure: bool


class MacroDefs(BaseModel):
    """The JSON macro-definition file (what export writes and import reads)."""

    macros: list[MacroDefOut]


class ImportResult(BaseModel):
    """What an import did, and the level afterwards."""

    imported: int
    items: list[MacroOut]


class ResolvedOut(BaseModel):
    """A value a job gets and where it comes from (``*****`` when secure)."""

    name: str
    value: str | None
    level: str
    secure: bool

    @classmethod
    def of(cls, m: ResolvedMacro) -> ResolvedOut:
        """Build from a resolved macro (the caller masks secure values first)."""
        return cls.model_validate(m, from_attributes=True)


class ResolvedList(BaseModel):
    """A preview of the macros a job of a jobconfig would get."""

    jobconfig_id: int
    template_id: int | None
    user: str | None
    items: list[ResolvedOut]


class JobMacrosOut(BaseModel):
    """The macros a job got at initialization (secure values null); empty before it."""

    job_id: int
    resolved: bool
    items: list[ResolvedOut]

    @classmethod
    def of(cls, job_id: int, record: dict[str, Any] | None) -> JobMacrosOut:
        """Build from the job's ``resolved_macros`` record."""
        items = [
            ResolvedOut(
                name=name,
                value=None if entry.get("secure") else entry.get("value"),
                level=str(entry.get("level")),
                secure=bool(entry.get("secure")),
            )
            for name, entry in sorted((record or {}).items())
        ]
        return cls(job_id=job_id, resolved=record is not None, items=items)
