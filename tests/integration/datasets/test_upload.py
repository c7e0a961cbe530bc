"""Uploads of every format, good and bad: what is stored, what is refused and that nothing is left behind."""

from __future__ import annotations

import hashlib

import pytest

from tests.integration.datasets.conftest import MAX_BYTES
from tests.integration.datasets.helpers import (
    ALPACA,
    PAIRWISE,
    SHAREGPT,
    TEXT,
    as_csv,
    as_json,
    as_jsonl,
    as_parquet,
    assert_error,
    info_json,
    leftovers,
    unique,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "fmt, rows, filename, encode",
    [
        ("alpaca", ALPACA, "data.json", as_json),
        ("alpaca", ALPACA, "data.jsonl", as_jsonl),
        ("alpaca", ALPACA, "data.csv", as_csv),
        ("alpaca", ALPACA, "data.parquet", as_parquet),
        ("sharegpt", SHAREGPT, "chat.jsonl", as_jsonl),
        ("sharegpt", SHAREGPT, "chat.parquet", as_parquet),
        ("text", TEXT, "corpus.jsonl", as_jsonl),
        ("text", TEXT, "corpus.csv", as_csv),
        ("pairwise", PAIRWISE, "prefs.json", as_json),
    ],
)
async def test_each_format_is_stored_under_a_platform_name(alice, data_dir, fmt, rows, filename, encode):
    content = encode(rows)
    name = unique(fmt)
    dataset = await alice.created(name, fmt, filename, content, remark="first try")
    assert dataset["name"] == name and dataset["format"] == fmt and dataset["visibility"] == "private"
    assert dataset["rows"] == len(rows) and dataset["size_bytes"] == len(content)
    assert dataset["checksum"] == hashlib.sha256(content).hexdigest()
    assert dataset["key"] == f"{alice.user_id}__{name}" and dataset["can_edit"] is True
    assert dataset["remark"] == "first try" and dataset["owner_id"] == alice.user_id
    suffix = "." + filename.rsplit(".", 1)[1]
    assert dataset["file_name"] == f"uploads/{dataset['id']}{suffix}"
    assert (data_dir / dataset["file_name"]).read_bytes() == content
    assert dataset["files"][0]["original"] == filename
    entry = info_json(data_dir)[dataset["key"]]
    assert entry == dataset["dataset_info"] and entry["file_name"] == dataset["file_name"]
    assert entry.get("ranking", False) is (fmt == "pairwise")
    assert entry["formatting"] == ("sharegpt" if fmt == "sharegpt" else "alpaca")


async def test_entries_follow_llama_factory(alice, data_dir):
    alpaca = await alice.created(unique(), "alpaca", "a.json", as_json(ALPACA))
    assert alpaca["dataset_info"]["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    no_input = await alice.created(unique(), "alpaca", "b.json", as_json([{"instruction": "x", "output": "y"}]))
    # The engine reads every listed column on every row: a default column the data lacks is left out.
    assert no_input["dataset_info"]["columns"] == {"prompt": "instruction", "response": "output"}
    text = await alice.created(unique(), "text", "t.jsonl", as_jsonl(TEXT))
    assert text["dataset_info"]["columns"] == {"prompt": "text"}
    chat = await alice.created(unique(), "sharegpt", "c.jsonl", as_jsonl(SHAREGPT))
    assert chat["dataset_info"]["columns"] == {"messages": "conversations"}
    assert chat["dataset_info"]["tags"]["user_tag"] == "human"
    mapped = await alice.created(
        unique(),
        "alpaca",
        "m.json",
        as_json([{"question": "q", "answer": "a", "sys": "be brief"}]),
        columns={"prompt": "question", "response": "answer", "system": "sys"},
    )
    assert mapped["dataset_info"]["columns"] == {"prompt": "question", "response": "answer", "system": "sys"}
    openai = [
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "u"},
                {"role": "assistant", "content": "a"},
            ]
        }
    ]
    tagged = await alice.created(
        unique(),
        "sharegpt",
        "o.json",
        as_json(openai),
        columns={"messages": "messages"},
        tags={"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
    )
    assert tagged["rows"] == 1 and tagged["dataset_info"]["tags"]["role_tag"] == "role"


BAD_FILES = [
    (
        "alpaca",
        "a.json",
        as_json([ALPACA[0], {"instruction": "x"}, ALPACA[1], {"output": "y"}]),
        "invalid_dataset",
        ["2 of 4 rows", "row 2: missing `output`", "row 4: missing `instruction`"],
    ),
    (
        "alpaca",
        "a.jsonl",
        b'{"instruction": "x", "output": "y"}\n{"instruction": "x", "output": \n',
        "invalid_dataset",
        ["line 2: not valid JSON"],
    ),
    (
        "alpaca",
        "a.json",
        b'[{"instruction": "x", "output": "y"}, {"instruction": tru',
        "invalid_dataset",
        ["row 2: not valid JSON"],
    ),
    ("alpaca", "a.json", b'{"instruction": "x", "output": "y"', "invalid_dataset", ["line 1: not valid JSON"]),
    ("alpaca", "a.json", b'"just a string"', "invalid_dataset", ["array of objects"]),
    (
        "alpaca",
        "a.json",
        as_json([{"instruction": "x", "output": 3}]),
        "invalid_dataset",
        ["row 1: `output` is not a string"],
    ),
    ("alpaca", "a.json", as_json([[1, 2]]), "invalid_dataset", ["row 1: is not an object"]),
    ("alpaca", "a.csv", as_csv([{"instruction": "x", "answer": "y"}]), "invalid_dataset", ["no `output` column"]),
    ("alpaca", "a.parquet", b"PAR1 not really parquet", "invalid_dataset", ["Parquet"]),
    ("alpaca", "a.json", b"[]", "empty_dataset", ["no rows"]),
    ("alpaca", "a.jsonl", b"\n\n", "empty_dataset", ["no rows"]),
    ("alpaca", "a.json", b"\xff\xfe[{}]", "invalid_dataset", ["UTF-8"]),
    (
        "sharegpt",
        "c.jsonl",
        as_jsonl([{"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "?"}]}]),
        "invalid_dataset",
        ["line 1: message 1", "'gpt'"],
    ),
    (
        "sharegpt",
        "c.jsonl",
        as_jsonl([{"conversations": [{"from": "human", "value": "hi"}]}]),
        "invalid_dataset",
        ["user/assistant pairs"],
    ),
    ("sharegpt", "c.csv", as_csv([{"conversations": "[]"}]), "invalid_dataset", ["CSV"]),
    (
        "text",
        "t.jsonl",
        as_jsonl([{"text": "ok"}, {"text": ""}, {"body": "x"}]),
        "invalid_dataset",
        ["line 2: `text` is empty", "line 3: missing `text`"],
    ),
    (
        "pairwise",
        "p.json",
        as_json([{"instruction": "x", "chosen": "a"}]),
        "invalid_dataset",
        ["row 1: missing `rejected`"],
    ),
    ("alpaca", "notes.txt", b"hello", "unsupported_file_type", [".jsonl"]),
]


@pytest.mark.parametrize("fmt, filename, content, code, says", BAD_FILES)
async def test_bad_files_say_what_and_where(alice, data_dir, fmt, filename, content, code, says):
    uploads = set((data_dir / "uploads").iterdir()) if (data_dir / "uploads").exists() else set()
    name = unique()
    error = assert_error(await alice.upload(name, fmt, [(filename, content)]), 422, code, "file")
    for words in says:
        assert words in error["message"], error
    assert leftovers(data_dir) == []
    assert (set((data_dir / "uploads").iterdir()) if (data_dir / "uploads").exists() else set()) == uploads
    assert not any(key.endswith(f"__{name}") for key in info_json(data_dir))
    assert (await alice.get(q=name)).json()["items"] == []


async def test_first_bad_rows_are_numbered_and_counted(alice):
    rows = [{"instruction": "x", "output": "y"} if i % 3 else {"instruction": "x"} for i in range(1, 101)]
    error = assert_error(await alice.upload(unique(), "alpaca", [("a.jsonl", as_jsonl(rows))]), 422, "invalid_dataset")
    assert error["message"].startswith("33 of 100 rows do not fit the alpaca format: line 3: missing `output`")
    assert "line 15" in error["message"] and "line 18" not in error["message"] and error["message"].endswith("…")


@pytest.mark.parametrize(
    "name, field",
    [
        ("../escape", "name"),
        ("a/b", "name"),
        ("", "name"),
        ("x" * 65, "name"),
        ("a__b", "name"),
        ("-lead", "name"),
        ("ok\n", "name"),
        (None, "name"),
    ],
)
async def test_names_limited_to_a_safe_set(alice, name, field):
    error = assert_error(await alice.upload(name, "alpaca", [("a.json", as_json(ALPACA))]), 422, "invalid_field", field)
    assert "name" in error["message"]


async def test_other_fields_checked(alice):
    upload = alice.upload
    data = [("a.json", as_json(ALPACA))]
    assert_error(await upload(unique(), "yaml", data), 422, "invalid_field", "format")
    assert_error(await upload(unique(), None, data), 422, "invalid_field", "format")
    assert_error(
        await upload(unique(), "alpaca", data, columns={"answer": "x"}), 422, "invalid_field", "columns.answer"
    )
    assert_error(await upload(unique(), "alpaca", data, columns="{not json"), 422, "invalid_field", "columns")
    assert_error(
        await upload(unique(), "alpaca", data, columns={"system": "sys"}), 422, "invalid_field", "columns.system"
    )
    assert_error(await upload(unique(), "alpaca", data, tags={"role_tag": "role"}), 422, "invalid_field", "tags")
    assert_error(await upload(unique(), "alpaca", data, visibility="everyone"), 422, "invalid_field", "visibility")
    assert_error(await upload(unique(), "alpaca", data, colour="red"), 422, "invalid_field", "colour")
    only_fields = f'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\n{unique()}\r\n--b--\r\n'
    response = await alice.client.post(
        "/api/datasets/upload",
        content=only_fields.encode(),
        headers={**alice.headers, "content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(response, 422, "invalid_field", "file")


async def test_names_unique_per_owner(alice, bob, admin):
    name = unique()
    await alice.created(name, "alpaca", "a.json", as_json(ALPACA))
    assert_error(await alice.upload(name, "alpaca", [("a.json", as_json(ALPACA))]), 409, "name_taken", "name")
    other = await bob.created(name, "alpaca", "a.json", as_json(ALPACA))  # another owner: fine
    assert other["key"] == f"{bob.user_id}__{name}"
    public = unique("pub")
    created = await admin.created(public, "alpaca", "a.json", as_json(ALPACA), visibility="public")
    assert created["key"] == public and created["visibility"] == "public"
    # A private dataset may not take a public one's name: a job would not know which was meant.
    assert_error(await bob.upload(public, "alpaca", [("a.json", as_json(ALPACA))]), 409, "name_taken", "name")


async def test_only_admins_make_public_datasets(alice, anonymous):
    assert_error(
        await alice.upload(unique(), "alpaca", [("a.json", as_json(ALPACA))], visibility="public"),
        403,
        "forbidden",
        "visibility",
    )
    assert_error(await anonymous.upload(unique(), "alpaca", [("a.json", as_json(ALPACA))]), 401, "unauthorized")


async def test_size_cap_is_413_and_leaves_nothing(alice, data_dir):
    """Counted on the bytes received (a chunked upload through the gateway: tests/e2e/test_datasets.py)."""
    row = {"instruction": "x" * 1000, "output": "y"}
    big = as_jsonl([row] * (MAX_BYTES // 1000 + 10))
    error = assert_error(await alice.upload(unique(), "alpaca", [("big.jsonl", big)]), 413, "payload_too_large", "file")
    assert f"{MAX_BYTES:,}" in error["message"]
    assert leftovers(data_dir) == []


async def test_not_multipart_or_cut_off(alice, client, data_dir):
    response = await client.post("/api/datasets/upload", json={"name": "x"}, headers=alice.headers)
    assert_error(response, 415, "unsupported_media_type")
    cut = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.json"\r\n\r\n[{"instruction"'
    response = await client.post(
        "/api/datasets/upload",
        content=cut,
        headers={**alice.headers, "content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(response, 400, "bad_request")
    assert leftovers(data_dir) == []
