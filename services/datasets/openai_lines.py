"""OpenAI's fine-tuning JSONL, line by line, into the datasets LLaMA-Factory trains on (docs/openai.md, "Files").

- chat (`{"messages": [...], "tools"?}`) → our sharegpt format with OpenAI's own tags (role/content, user,
  assistant, system, tool): an assistant turn with `tool_calls` becomes a function_call turn (the calls as JSON,
  arguments decoded), the tool answers after it one observation turn; `tools` is kept as the JSON LLaMA-Factory
  reads (it understands OpenAI's `{"type": "function", "function": ...}`).
- preference (`{"input": {"messages"}, "preferred_output": [...], "non_preferred_output": [...]}`) → our pairwise
  format: the last user message is the prompt, earlier user/assistant pairs the history, a system message the
  system; one assistant message on each side.

An assistant `weight` of 1 is accepted; `weight: 0` is refused (LLaMA-Factory trains on every assistant turn of a
conversation: there is no per-turn mask to map it to). A file is one kind throughout; the first line says which.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import msgspec

from .formats import SHAREGPT_TAGS
from .readers import MAX_LINE_BYTES, DatasetProblem, bounded_lines

Kind = Literal["chat", "preference"]
CHAT_TAGS = {
    **SHAREGPT_TAGS,
    "role_tag": "role",
    "content_tag": "content",
    "user_tag": "user",
    "assistant_tag": "assistant",
    "observation_tag": "tool",
    "function_tag": "function_call",
    "system_tag": "system",
}
# Every converted row has every column (an empty system, tools or history when the example has none): the engine
# indexes each listed column on each row.
CHAT_COLUMNS = {"messages": "messages", "tools": "tools"}
PREFERENCE_COLUMNS = {
    "prompt": "instruction",
    "chosen": "chosen",
    "rejected": "rejected",
    "system": "system",
    "history": "history",
}
ROLES = ("system", "user", "assistant", "tool")
_decode = msgspec.json.Decoder()


class LineProblem(ValueError):
    """What is wrong with one line of the file, in words a user can act on (1-based line number)."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


class Bad(ValueError):
    """A problem within one line (LineProblem adds its number)."""


@dataclass
class Converted:
    kind: Kind
    rows: int


def kind_of(row: Any) -> Kind:
    if isinstance(row, dict) and ("preferred_output" in row or "input" in row):
        return "preference"
    return "chat"


def text_of(content: Any, where: str) -> str:
    """A message's content: a string, or text parts joined (OpenAI's `[{"type": "text", "text": ...}]`)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise Bad(f'{where}: only text content parts (`{{"type": "text", "text": ...}}`) are supported')
            texts.append(part["text"])
        return "".join(texts)
    raise Bad(f"{where}: `content` must be a string or a list of text parts")


def _calls_of(message: dict, where: str) -> str:
    """An assistant's tool calls as LLaMA-Factory's function_call content: [{"name", "arguments"}] as JSON."""
    calls = []
    for call in message["tool_calls"]:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise Bad(f"{where}: each of `tool_calls` needs `function` with a `name`")
        arguments = function.get("arguments", "{}")
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            pass  # kept as the text it is
        calls.append({"name": function["name"], "arguments": arguments})
    return json.dumps(calls, ensure_ascii=False)


def _weight(message: dict, where: str) -> None:
    weight = message.get("weight", 1)
    if weight == 1 and not isinstance(weight, bool):
        return
    if weight == 0 and not isinstance(weight, bool):
        raise Bad(
            f"{where}: `weight: 0` is not supported yet (every assistant message is trained on): remove the weight "
            "or set it to 1, or leave the message out"
        )
    raise Bad(f"{where}: `weight` must be 0 or 1")


def _message(message: Any, where: str) -> dict:
    if not isinstance(message, dict):
        raise Bad(f"{where} must be an object with `role` and `content`")
    role = message.get("role")
    if role not in ROLES:
        raise Bad(f"{where}: `role` must be one of {', '.join(ROLES)} (got {str(role)[:40]!r})")
    return message


def chat_turns(messages: Any, field: str = "messages", *, ranking: bool = False) -> list[dict]:
    """OpenAI messages as sharegpt turns with OpenAI's tags; Bad when the conversation cannot be trained on.
    `ranking`: a preference prompt, which ends with a user message instead of an assistant one."""
    if not isinstance(messages, list) or not messages:
        raise Bad(f"`{field}` must be a non-empty list of messages")
    turns: list[dict] = []
    for index, raw in enumerate(messages):
        where = f"{field}[{index}]"
        message = _message(raw, where)
        role = message["role"]
        if role == "system":
            if index != 0:
                raise Bad(f"{where}: a system message may only come first")
            turns.append({"role": "system", "content": text_of(message.get("content"), where)})
        elif role == "assistant":
            _weight(message, where)
            if message.get("tool_calls"):
                if message.get("content"):
                    raise Bad(f"{where}: an assistant message with both `content` and `tool_calls` is not supported")
                turns.append({"role": "function_call", "content": _calls_of(message, where)})
            else:
                turns.append({"role": "assistant", "content": text_of(message.get("content"), where)})
        elif role == "tool" and turns and turns[-1]["role"] == "tool":
            turns[-1]["content"] += "\n" + text_of(message.get("content"), where)  # parallel calls' answers
        else:
            turns.append({"role": role, "content": text_of(message.get("content"), where)})
    _check_order(turns, field, ranking)
    return turns


def _check_order(turns: list[dict], field: str, ranking: bool) -> None:
    """User (or tool after a call) and assistant alternate, as LLaMA-Factory needs; training needs an answer last."""
    start = 1 if turns[0]["role"] == "system" else 0
    asking, answering = ("user", "tool"), ("assistant", "function_call")
    for position, turn in enumerate(turns[start:]):
        wanted = asking if position % 2 == 0 else answering
        if turn["role"] not in wanted:
            said = "a user message" if wanted == asking else "an assistant message"
            if turn["role"] == "tool":
                said += " (a tool message answers the assistant's tool_calls just before it)"
            raise Bad(f"`{field}`: message {start + position + 1} ({turn['role']}) is where {said} belongs")
    count = len(turns) - start
    if ranking and count % 2 == 0:
        raise Bad(f"`{field}` must end with a user message (the prompt the outputs answer)")
    if not ranking and (count == 0 or count % 2):
        raise Bad(f"`{field}` must end with an assistant message (at least one assistant message to train on)")


def convert_chat(row: Any) -> dict:
    if not isinstance(row, dict) or "messages" not in row:
        raise Bad(
            "each line must be a JSON object with `messages` (chat), or `input`, `preferred_output` and "
            "`non_preferred_output` (preference)"
        )
    converted: dict[str, Any] = {"messages": chat_turns(row["messages"]), "tools": ""}
    tools = row.get("tools")
    if tools:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise Bad("`tools` must be a list of tool objects")
        converted["tools"] = json.dumps(tools, ensure_ascii=False)
    return converted


def _output(row: dict, field: str) -> str:
    output = row.get(field)
    if not isinstance(output, list) or len(output) != 1:
        raise Bad(f"`{field}` must be a list of exactly one assistant message")
    message = _message(output[0], f"{field}[0]")
    if message["role"] != "assistant" or message.get("tool_calls"):
        raise Bad(f"`{field}[0]` must be an assistant message with text content")
    return text_of(message.get("content"), f"{field}[0]")


def convert_preference(row: Any) -> dict:
    if not isinstance(row, dict) or not isinstance(row.get("input"), dict):
        raise Bad("`input` must be an object with `messages` (the prompt of a preference example)")
    turns = chat_turns(row["input"].get("messages"), "input.messages", ranking=True)
    if any(t["role"] in ("tool", "function_call") for t in turns):
        raise Bad("`input.messages`: tool calls are not supported in preference examples")
    system = turns.pop(0)["content"] if turns[0]["role"] == "system" else None
    history = [[turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns) - 1, 2)]
    return {
        "instruction": turns[-1]["content"],
        "chosen": _output(row, "preferred_output"),
        "rejected": _output(row, "non_preferred_output"),
        "system": system or "",
        "history": history,
    }


def lines_of(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(1-based number, line) of each non-blank line, none read past the datasets' longest row."""
    number = 0
    try:
        for number, line in enumerate(bounded_lines(handle), start=1):
            if line.strip():
                yield number, line
    except DatasetProblem as exc:
        raise LineProblem(number + 1, f"longer than {MAX_LINE_BYTES >> 20} MiB, the longest example taken") from exc


def convert_file(source: Path, target: Path) -> Converted:
    """Write `source` (OpenAI JSONL) to `target` (JSON lines LLaMA-Factory reads); LineProblem at the first bad line
    (blocking)."""
    found: Converted | None = None
    with open(source, "rb") as lines, open(target, "wb") as out:
        for number, line in lines_of(lines):
            try:
                row = _decode.decode(line)
            except msgspec.DecodeError as exc:
                raise LineProblem(number, f"not valid JSON ({exc})") from exc
            except RecursionError as exc:
                raise LineProblem(number, "nested too deep to read") from exc
            kind = kind_of(row)
            if found is None:
                found = Converted(kind=kind, rows=0)
            elif kind != found.kind:
                raise LineProblem(number, f"a {kind} example in a file of {found.kind} examples (line 1's kind)")
            try:
                converted = convert_chat(row) if kind == "chat" else convert_preference(row)
            except Bad as exc:
                raise LineProblem(number, str(exc)) from exc
            found.rows += 1
            out.write(msgspec.json.encode(converted) + b"\n")
    if found is None:
        raise LineProblem(1, "the file has no examples (one JSON object per line)")
    return found


def dataset_of(converted: Converted) -> tuple[str, dict[str, str], dict[str, str]]:
    """(format, columns, tags) of the converted file's dataset."""
    if converted.kind == "chat":
        return "sharegpt", dict(CHAT_COLUMNS), dict(CHAT_TAGS)
    return "pairwise", dict(PREFERENCE_COLUMNS), {}
