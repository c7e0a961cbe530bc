"""The dataset formats LLaMA-Factory reads: their columns, `dataset_info` entries, stage rules and rendering.

A format names the *roles* LLaMA-Factory knows (``prompt``, ``response``, ``messages`` ...) and the
column each role reads by default; an upload may map roles to other columns. The per-row checks, which
follow the engine's converters (``data/converter.py``), are in rows.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Format = Literal["alpaca", "sharegpt", "text", "pairwise"]
FORMATS: tuple[str, ...] = ("alpaca", "sharegpt", "text", "pairwise")

SHAREGPT_TAGS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}
PREVIEW_TEXT_CHARS = 2000


@dataclass(frozen=True)
class FormatSpec:
    """One format: roles it needs, roles it may use, and their default columns."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    defaults: Mapping[str, str]
    description: str

    def columns(self, mapping: Mapping[str, str] | None) -> dict[str, str]:
        """Role -> column: LLaMA-Factory's defaults for this format, overridden by `mapping`."""
        return {**self.defaults, **(mapping or {})}


SPECS: dict[str, FormatSpec] = {
    "alpaca": FormatSpec(
        "alpaca",
        required=("prompt", "response"),
        optional=("query", "system", "history", "kto_tag"),
        defaults={"prompt": "instruction", "query": "input", "response": "output"},
        description="instruction / input / output (supervised fine-tuning)",
    ),
    "sharegpt": FormatSpec(
        "sharegpt",
        required=("messages",),
        optional=("system", "tools", "kto_tag"),
        defaults={"messages": "conversations"},
        description="conversations: alternating user / assistant turns (supervised fine-tuning)",
    ),
    "text": FormatSpec(
        "text",
        required=("prompt",),
        optional=(),
        defaults={"prompt": "text"},
        description="plain text documents (pretraining, stage pt)",
    ),
    "pairwise": FormatSpec(
        "pairwise",
        required=("prompt", "chosen", "rejected"),
        optional=("query", "system", "history"),
        defaults={"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
        description="instruction / input / chosen / rejected (preference: stages rm and dpo)",
    ),
}


def spec(name: str) -> FormatSpec:
    return SPECS[name]


def settle_columns(fmt: str, mapping: Mapping[str, str], seen: set[str]) -> dict[str, str]:
    """The columns to write in the entry: required roles, mapped ones, and default optional ones the data has.

    LLaMA-Factory indexes every listed column on every row, so a default optional column (alpaca's
    `input`) that no row has must be left out.
    """
    columns = SPECS[fmt].columns(mapping)
    return {
        role: column
        for role, column in columns.items()
        if role in SPECS[fmt].required or role in mapping or column in seen
    }


def stage_problem(fmt: str, columns: Mapping[str, str], stage: str) -> str | None:
    """Why a dataset cannot serve a training stage (LLaMA-Factory's own rule), or None."""
    pairwise = fmt == "pairwise"
    if stage in ("rm", "dpo") and not pairwise:
        return f"stage {stage} needs a pairwise dataset (prompt, chosen, rejected)"
    if pairwise and stage not in ("rm", "dpo"):
        return f"a pairwise dataset serves stages rm and dpo, not {stage}"
    if stage == "kto" and not columns.get("kto_tag"):
        return "stage kto needs a dataset with a kto_tag column (true/false per row)"
    return None


def info_entry(
    fmt: str,
    file_name: str | None,
    columns: Mapping[str, str],
    tags: Mapping[str, str] | None,
    hub: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The LLaMA-Factory `dataset_info.json` entry of a dataset."""
    entry: dict[str, Any] = dict(hub) if hub else {"file_name": file_name}
    entry["formatting"] = "sharegpt" if fmt == "sharegpt" else "alpaca"
    if fmt == "pairwise":
        entry["ranking"] = True
    entry["columns"] = dict(columns)
    if fmt == "sharegpt":
        entry["tags"] = {**SHAREGPT_TAGS, **(tags or {})}
    return entry


def format_of_entry(entry: Mapping[str, Any]) -> str:
    """Which of our formats an existing `dataset_info` entry describes (for public datasets read from a file)."""
    if entry.get("ranking"):
        return "pairwise"
    if entry.get("formatting") == "sharegpt":
        return "sharegpt"
    columns = entry.get("columns") or {}
    if columns.get("prompt") and not columns.get("response") and not columns.get("query"):
        return "text"
    return "alpaca"


def columns_of_entry(fmt: str, entry: Mapping[str, Any]) -> dict[str, str]:
    columns = SPECS[fmt].columns(entry.get("columns") or {})
    return {role: str(column) for role, column in columns.items()}


# --- rendering (preview) ---------------------------------------------------------------------------------


def _clip(value: Any) -> Any:
    if isinstance(value, str) and len(value) > PREVIEW_TEXT_CHARS:
        return value[:PREVIEW_TEXT_CHARS] + f"… [{len(value) - PREVIEW_TEXT_CHARS} more characters]"
    if isinstance(value, list):
        return [_clip(v) for v in value]
    if isinstance(value, dict):
        return {k: _clip(v) for k, v in value.items()}
    return value


def _user_text(row: Mapping[str, Any], columns: Mapping[str, str]) -> str:
    parts = [row.get(columns["prompt"]) or "", row.get(columns["query"]) or "" if columns.get("query") else ""]
    return "\n".join(part for part in parts if part)


def _history_turns(row: Mapping[str, Any], columns: Mapping[str, str]) -> list[dict[str, str]]:
    turns: list[dict[str, str]] = []
    for question, answer in row.get(columns.get("history") or "", None) or []:
        turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return turns


def render(fmt: str, row: Mapping[str, Any], columns: Mapping[str, str], tags: Mapping[str, str]) -> dict:
    """The row as LLaMA-Factory hands it to the chat template: system, prompt turns, response(s)."""
    system = row.get(columns["system"]) if columns.get("system") else None
    if fmt == "text":
        return _clip({"text": row.get(columns["prompt"])})
    if fmt == "sharegpt":
        return _clip(_render_sharegpt(row, columns, {**SHAREGPT_TAGS, **tags}, system))
    prompt = [*_history_turns(row, columns), {"role": "user", "content": _user_text(row, columns)}]
    if fmt == "pairwise":
        return _clip(
            {
                "system": system,
                "prompt": prompt,
                "chosen": {"role": "assistant", "content": row.get(columns["chosen"])},
                "rejected": {"role": "assistant", "content": row.get(columns["rejected"])},
            }
        )
    return _clip(
        {
            "system": system,
            "prompt": prompt,
            "response": [{"role": "assistant", "content": row.get(columns["response"])}],
        }
    )


def _render_sharegpt(row: Mapping[str, Any], columns: Mapping[str, str], tags: Mapping[str, str], system: Any) -> dict:
    roles = {
        tags["user_tag"]: "user",
        tags["assistant_tag"]: "assistant",
        tags["observation_tag"]: "observation",
        tags["function_tag"]: "function",
        tags["system_tag"]: "system",
    }
    messages = [
        {"role": roles.get(m.get(tags["role_tag"]), "?"), "content": m.get(tags["content_tag"])}
        for m in row.get(columns["messages"]) or []
    ]
    if messages and messages[0]["role"] == "system":
        system = system or messages.pop(0)["content"]
    return {
        "system": system,
        "prompt": messages[:-1],
        "response": messages[-1:],
        "tools": row.get(columns["tools"]) if columns.get("tools") else None,
    }


def render_raw(row: Any) -> Any:
    """The row as stored, long texts clipped."""
    return _clip(row)
