"""Where things are in a YAML document: problems of an apply file with their ``file:line``.

Shared by :mod:`jobyard.service.apply.document` and :mod:`jobyard.service.apply.templatespec`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the file, located as precisely as possible."""

    message: str
    line: int | None = None
    where: str = ""

    def render(self, source: str) -> str:
        """``file:line: where: message``."""
        prefix = f"{source}:{self.line}" if self.line else source
        where = f" {self.where}:" if self.where else ""
        return f"{prefix}:{where} {self.message}"


class SpecError(Exception):
    """The file is not a valid apply file; ``problems`` says everything that is wrong."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(p.render(source) for p in self.problems))


def duplicate_keys(node: yaml.Node) -> Iterable[Problem]:
    """YAML lets a later key silently replace an earlier one; here it is an error."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                if key.value in seen:
                    yield Problem(
                        f"duplicate key {key.value!r} (first at line {seen[key.value]})", line
                    )
                else:
                    seen[key.value] = line
            yield from duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from duplicate_keys(item)


def node_at(root: yaml.Node, loc: Sequence[Any]) -> tuple[yaml.Node, bool]:
    """The deepest node along ``loc``; the flag says whether the whole path was found."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node = value
                    break
            else:
                return node, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return node, False
            node = node.value[part]
        else:
            return node, False
    return node, True


def key_node(root: yaml.Node | None, loc: Sequence[Any]) -> yaml.Node | None:
    """The key node of the last element of ``loc`` (for unknown keys)."""
    if root is None:
        return None
    parent, found = node_at(root, loc[:-1])
    if found and isinstance(parent, yaml.MappingNode):
        for key, _value in parent.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(loc[-1]):
                return key
    return None


def line_at(root: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """The line of the node at ``loc`` (or of its deepest ancestor); None without a tree
    (a document that came as JSON)."""
    if root is None:
        return None
    node, _found = node_at(root, loc)
    return node.start_mark.line + 1


def where_text(loc: Sequence[Any]) -> str:
    """``jobconfigs[0].schedules[1]``: a path into the document, as problems name it."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def loc_of(where: str) -> list[str | int]:
    """The path of :func:`where_text` back as keys and indexes (to find its line in a file)."""
    return [int(index) if index else key for key, index in _PART.findall(where)]
