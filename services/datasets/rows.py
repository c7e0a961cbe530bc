"""Row checks at C speed: each format and column mapping becomes a msgspec type that rows decode into.

msgspec validates presence and types while it decodes (a JSON line) or converts (a CSV, Parquet or
JSON-array row); Python only adds what a type cannot say (an alpaca prompt may be empty when the input
is not; sharegpt turns alternate). The rules follow LLaMA-Factory's converters, so a dataset that passes
is one the engine trains on without silently dropping rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from .formats import SHAREGPT_TAGS

NonEmpty = Annotated[str, Meta(min_length=1)]
OptionalText = str | None | UnsetType
History = list[tuple[str, str]] | None | UnsetType
# Role -> field type per format; roles the mapping does not name are left out of the type.
ROLE_TYPES: dict[str, dict[str, Any]] = {
    "alpaca": {
        "prompt": str,
        "query": OptionalText,
        "response": NonEmpty,
        "system": OptionalText,
        "history": History,
        "kto_tag": bool,
    },
    "pairwise": {
        "prompt": str,
        "query": OptionalText,
        "chosen": NonEmpty,
        "rejected": NonEmpty,
        "system": OptionalText,
        "history": History,
    },
    "text": {"prompt": NonEmpty},
    "sharegpt": {"messages": None, "system": OptionalText, "tools": OptionalText, "kto_tag": bool},
}
OPTIONAL = {"query", "system", "history", "tools"}
_MESSAGE = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"missing required field `(?P<field>[^`]*)`")


class RowProblem(Exception):
    """What is wrong with one row, in words a user can act on."""


def _describe(exc: msgspec.ValidationError) -> str:
    """msgspec's message in the words the other checks use: "missing `output`", "`text` is empty"."""
    match = _MESSAGE.match(str(exc))
    assert match is not None  # every part of _MESSAGE may match the empty string
    msg, path = match["msg"], (match["path"] or "").lstrip(".")
    if missing := _MISSING.search(msg):
        return f"missing `{f'{path}.' if path else ''}{missing['field']}`"
    if not path:
        return "is not an object" if msg.startswith("Expected `object`") else msg
    if "got `null`" in msg:
        return f"`{path}` is null"
    if "length >= 1" in msg:
        return f"`{path}` is empty"
    if msg.startswith("Expected `str`"):
        return f"`{path}` is not a string"
    if msg.startswith("Expected `bool`"):
        return f"`{path}` must be true or false"
    return f"`{path}`: {msg}"


class RowChecker:
    """Checks the rows of one dataset: its format, column mapping and (sharegpt) tags."""

    def __init__(self, fmt: str, columns: Mapping[str, str], tags: Mapping[str, str] | None = None):
        self.fmt = fmt
        self.columns = dict(columns)
        self.tags = {**SHAREGPT_TAGS, **(tags or {})}
        fields = []
        for role in self.columns:
            kind = ROLE_TYPES[fmt].get(role)
            if kind is None and role == "messages":
                kind = Annotated[list[self._message_type()], Meta(min_length=1)]
            if kind is None:
                continue  # media columns of an operator's public entry: not checked here
            fields.append((role, kind, UNSET) if role in OPTIONAL else (role, kind))
        fields.sort(key=lambda f: len(f) == 3)  # required fields first, as a struct needs
        self.type = msgspec.defstruct("Row", fields, rename=dict(self.columns.items()), forbid_unknown_fields=False)
        self.decoder = msgspec.json.Decoder(self.type)
        self.absent = [role for role in self.columns if role in OPTIONAL]
        self.asking = {self.tags["user_tag"], self.tags["observation_tag"]}
        self.answering = {self.tags["assistant_tag"], self.tags["function_tag"]}

    def _message_type(self):
        return msgspec.defstruct(
            "Message",
            [("role", str), ("content", str)],
            rename={"role": self.tags["role_tag"], "content": self.tags["content_tag"]},
            forbid_unknown_fields=False,
        )

    def decode(self, line: bytes) -> Any:
        """A JSON line as a checked row; RowProblem says why not. msgspec.DecodeError: not JSON at all."""
        try:
            return self._extra(self.decoder.decode(line))
        except msgspec.ValidationError as exc:
            raise RowProblem(_describe(exc)) from exc

    def convert(self, row: Any, *, strict: bool = True) -> Any:
        """An already-parsed row (CSV rows are text: `strict=False` reads "true" as a bool)."""
        try:
            return self._extra(msgspec.convert(row, self.type, strict=strict))
        except msgspec.ValidationError as exc:
            raise RowProblem(_describe(exc)) from exc

    def present(self, row: Any) -> None:
        """Note which optional columns this row has (the entry lists only those some row has)."""
        self.absent = [role for role in self.absent if getattr(row, role) is UNSET]

    def present_in(self, rows: Sequence[Any]) -> None:
        """`present` for many rows at once, each column's values gathered by one C-level map."""
        self.absent = [role for role in self.absent if list(map(attrgetter(role), rows)).count(UNSET) == len(rows)]

    def extras_hold(self, rows: Sequence[Any]) -> bool:
        """Whether the checks a type cannot say hold for every row; False: look at each row (`decode` says why)."""
        if self.fmt in ("alpaca", "pairwise"):
            return all(map(attrgetter("prompt"), rows))  # an empty prompt may still be fine: the caller looks
        if self.fmt == "sharegpt":
            try:
                for row in rows:
                    self._turns(row.messages)
            except RowProblem:
                return False
        return True

    def _extra(self, row: Any) -> Any:
        if self.fmt in ("alpaca", "pairwise") and not row.prompt and not (isinstance(row.query, str) and row.query):
            raise RowProblem(f"`{self.columns['prompt']}` is empty")
        if self.fmt == "sharegpt":
            self._turns(row.messages)
        return row

    def _turns(self, messages: list) -> None:
        """Turns alternate (user | observation) then (assistant | function), after an optional system turn."""
        column = self.columns["messages"]
        start = 1 if messages[0].role == self.tags["system_tag"] else 0
        if (len(messages) - start) % 2 or len(messages) == start:
            raise RowProblem(f"`{column}` must hold user/assistant pairs (found {len(messages) - start} turns)")
        for index in range(start, len(messages)):
            expected = self.asking if (index - start) % 2 == 0 else self.answering
            if messages[index].role not in expected:
                wanted = " or ".join(sorted(repr(r) for r in expected))
                raise RowProblem(
                    f"message {index + 1} of `{column}` has role {messages[index].role!r} where {wanted} is expected"
                )
