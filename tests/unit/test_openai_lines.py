"""OpenAI's fine-tuning JSONL into LLaMA-Factory's datasets: what each example becomes, that the datasets' own row
checks accept the result, and which line a bad file is refused at, with what to fix. Also the OpenAI error shape
a service's /v1 routes answer with."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from litestar import Request

from services.common.errors import ApiError
from services.common.openai_errors import OPENAI_EXCEPTION_HANDLERS
from services.datasets import formats
from services.datasets.openai_lines import LineProblem, convert_file, dataset_of
from services.datasets.readers import MAX_LINE_BYTES
from services.datasets.rows import RowChecker

pytestmark = pytest.mark.unit

CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": "Hello", "weight": 1},
    ]
}
TOOLS = {
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Lyon"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
        {"role": "assistant", "content": "Sunny in Paris."},
    ],
    "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
}
PREFERENCE = {
    "input": {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "1+1?"},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "2+2?"},
        ]
    },
    "preferred_output": [{"role": "assistant", "content": "4"}],
    "non_preferred_output": [{"role": "assistant", "content": "5"}],
}


def convert(tmp_path: Path, *rows, raw: bytes | None = None):
    source, target = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_bytes(raw if raw is not None else b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    converted = convert_file(source, target)
    return converted, [json.loads(line) for line in target.read_text().splitlines()]


def refusal(tmp_path: Path, *rows, raw: bytes | None = None) -> LineProblem:
    with pytest.raises(LineProblem) as caught:
        convert(tmp_path, *rows, raw=raw)
    return caught.value


def check_rows(converted, rows) -> None:
    """The datasets service's own row check (what an upload of the converted file would pass)."""
    fmt, columns, tags = dataset_of(converted)
    checker = RowChecker(fmt, formats.spec(fmt).columns(columns), tags)
    for row in rows:
        checker.convert(row)


def test_a_chat_example_becomes_sharegpt_with_openai_tags(tmp_path):
    converted, rows = convert(tmp_path, CHAT)
    assert converted.kind == "chat" and converted.rows == 1
    assert rows == [
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello"},
            ],
            "tools": "",
        }
    ]
    fmt, columns, tags = dataset_of(converted)
    assert fmt == "sharegpt" and columns == {"messages": "messages", "tools": "tools"}
    assert tags["role_tag"] == "role" and tags["user_tag"] == "user" and tags["observation_tag"] == "tool"
    check_rows(converted, rows)


def test_tool_calls_become_a_function_call_turn_and_one_observation(tmp_path):
    converted, [row] = convert(tmp_path, TOOLS)
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["user", "function_call", "tool", "assistant"]
    calls = json.loads(row["messages"][1]["content"])
    assert calls == [
        {"name": "weather", "arguments": {"city": "Paris"}},
        {"name": "weather", "arguments": {"city": "Lyon"}},
    ]
    assert row["messages"][2]["content"] == "sunny\nrain"
    assert json.loads(row["tools"]) == TOOLS["tools"]
    check_rows(converted, [row])


def test_a_preference_example_becomes_pairwise_with_history(tmp_path):
    converted, [row] = convert(tmp_path, PREFERENCE)
    assert converted.kind == "preference"
    assert row == {
        "instruction": "2+2?",
        "chosen": "4",
        "rejected": "5",
        "system": "Be kind.",
        "history": [["1+1?", "2"]],
    }
    fmt, columns, _ = dataset_of(converted)
    assert fmt == "pairwise" and formats.stage_problem(fmt, columns, "dpo") is None
    check_rows(converted, [row])


@pytest.mark.parametrize(
    "bad, said",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "must end with an assistant message"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 0}]},
            "`weight: 0` is not supported yet",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x", "weight": 2}]},
            "`weight` must be 0 or 1",
        ),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "`role` must be one of"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "only text content parts",
        ),
        (
            {"messages": [{"role": "assistant", "content": "x"}]},
            "message 1 (assistant) is where a user message belongs",
        ),
        ({"prompt": "x"}, "each line must be a JSON object with `messages`"),
        ({**PREFERENCE, "preferred_output": []}, "`preferred_output` must be a list of exactly one assistant message"),
    ],
)
def test_the_first_bad_line_is_named_with_what_to_fix(tmp_path, bad, said):
    problem = refusal(tmp_path, PREFERENCE if "input" in bad else CHAT, bad, CHAT)
    assert problem.line == 2 and said in str(problem) and str(problem).startswith("line 2: ")


def test_lines_that_are_not_json_blank_lines_and_mixed_kinds(tmp_path):
    good = json.dumps(CHAT).encode()
    assert refusal(tmp_path, raw=good + b"\n\n{not json\n").line == 3  # the blank line still counts
    assert "a preference example in a file of chat examples" in str(refusal(tmp_path, CHAT, PREFERENCE))
    assert refusal(tmp_path, raw=b"\n \n").problem.startswith("the file has no examples")
    converted, rows = convert(tmp_path, raw=good + b"\r\n\n" + good)
    assert converted.rows == 2 and len(rows) == 2


def test_an_endless_or_too_deep_line_is_refused_without_reading_it_whole(tmp_path):
    endless = json.dumps(CHAT).encode() + b"\n" + b'{"messages": "' + b"x" * (MAX_LINE_BYTES + 10)
    problem = refusal(tmp_path, raw=endless)
    assert problem.line == 2 and "longer than 16 MiB" in problem.problem
    deep = refusal(tmp_path, raw=b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
    assert deep.line == 1 and ("too deep" in deep.problem or "not valid JSON" in deep.problem)


def test_errors_of_v1_routes_come_in_openais_shape():
    request = Request(scope={"type": "http", "method": "GET", "path": "/v1/files", "headers": [], "state": {}})  # pyright: ignore[reportArgumentType]
    shaped = OPENAI_EXCEPTION_HANDLERS[ApiError](request, ApiError(422, "invalid_field", "fix `limit`", "limit"))
    assert shaped.status_code == 400  # OpenAI's status for any invalid request
    assert msgspec.json.decode(msgspec.json.encode(shaped.content)) == {
        "error": {"message": "fix `limit`", "type": "invalid_request_error", "param": "limit", "code": "invalid_field"}
    }
    missing = OPENAI_EXCEPTION_HANDLERS[ApiError](request, ApiError(404, "not_found", "No such File object: x"))
    assert missing.status_code == 404 and missing.content["error"]["code"] == "not_found"
    broken = OPENAI_EXCEPTION_HANDLERS[Exception](request, RuntimeError("secret detail"))
    assert broken.status_code == 500 and broken.content["error"]["type"] == "server_error"
    assert "secret" not in broken.content["error"]["message"]
