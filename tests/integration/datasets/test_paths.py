"""Archives and paths: entries become platform-named files; nothing a user names escapes the data folder."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.integration.datasets.helpers import (
    ALPACA,
    as_csv,
    as_json,
    as_jsonl,
    as_tar,
    as_zip,
    assert_error,
    info_json,
    leftovers,
    unique,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("packer, filename", [(as_zip, "shards.zip"), (as_tar, "shards.tar.gz")])
async def test_archive_entries_become_parts(alice, data_dir, packer, filename):
    entries = {
        "train/part1.jsonl": as_jsonl(ALPACA[:3]),
        "train/part2.json": as_json(ALPACA[3:]),
        "__MACOSX/._part1.jsonl": b"junk",
    }
    dataset = await alice.created(unique(), "alpaca", filename, packer(entries))
    assert dataset["rows"] == len(ALPACA)
    assert dataset["file_name"] == f"uploads/{dataset['id']}"
    folder = data_dir / dataset["file_name"]
    assert sorted(p.name for p in folder.iterdir()) == ["part-00000.jsonl", "part-00001.json"]
    originals = [f["original"] for f in dataset["files"]]
    assert originals == [f"{filename}:train/part1.jsonl", f"{filename}:train/part2.json"]
    assert dataset["files"][0]["sha256"] == hashlib.sha256(entries["train/part1.jsonl"]).hexdigest()
    assert info_json(data_dir)[dataset["key"]]["file_name"] == dataset["file_name"]


async def test_several_file_parts_make_one_dataset(alice, data_dir):
    files = [("a.jsonl", as_jsonl(ALPACA[:2])), ("b.jsonl", as_jsonl(ALPACA))]
    response = await alice.upload(unique(), "alpaca", files)
    assert response.status_code == 201, response.text
    assert response.json()["rows"] == 2 + len(ALPACA)
    mixed = await alice.upload(unique(), "alpaca", [("a.jsonl", as_jsonl(ALPACA)), ("b.csv", as_csv(ALPACA))])
    assert "share a type" in assert_error(mixed, 422, "invalid_dataset", "file")["message"]


@pytest.mark.parametrize("packer", [as_zip, as_tar])
@pytest.mark.parametrize(
    "entry, why",
    [
        ("../escaped.jsonl", "`..`"),
        ("ok/../../escaped.jsonl", "`..`"),
        ("/tmp/escaped.jsonl", "absolute"),
        ("C:\\escaped.jsonl", "absolute"),
        ("..\\escaped.jsonl", "`..`"),
    ],
)
async def test_unsafe_archive_entries_refused(alice, data_dir, packer, entry, why):
    content = packer({"fine.jsonl": as_jsonl(ALPACA), entry: as_jsonl(ALPACA)})
    error = assert_error(
        await alice.upload(unique(), "alpaca", [("evil.zip" if packer is as_zip else "evil.tgz", content)]),
        422,
        "unsafe_archive_entry",
        "file",
    )
    assert why in error["message"]
    assert not (data_dir.parent / "escaped.jsonl").exists() and not os.path.exists("/tmp/escaped.jsonl")
    assert leftovers(data_dir) == []


@pytest.mark.parametrize("packer, filename", [(as_zip, "links.zip"), (as_tar, "links.tar.gz")])
async def test_links_in_archives_refused(alice, data_dir, packer, filename):
    content = packer({"fine.jsonl": as_jsonl(ALPACA)}, symlink="data.jsonl")
    assert_error(await alice.upload(unique(), "alpaca", [(filename, content)]), 422, "unsafe_archive_entry", "file")
    assert leftovers(data_dir) == []


async def test_archive_of_other_files_refused(alice):
    error = assert_error(
        await alice.upload(unique(), "alpaca", [("x.zip", as_zip({"run.sh": b"rm -rf /"}))]),
        422,
        "unsupported_file_type",
        "file",
    )
    assert "run.sh" in error["message"]
    assert_error(await alice.upload(unique(), "alpaca", [("x.zip", b"PK not a zip")]), 422, "invalid_dataset", "file")
    assert_error(await alice.upload(unique(), "alpaca", [("x.zip", as_zip({}))]), 422, "empty_dataset", "file")


@pytest.mark.parametrize("filename", ["../../escaped.json", "dir/a.json", "..\\a.json", ".."])
async def test_uploaded_file_names_with_paths_refused(alice, data_dir, filename):
    assert_error(await alice.upload(unique(), "alpaca", [(filename, as_json(ALPACA))]), 422, "unsafe_file_name", "file")
    assert not (data_dir.parent.parent / "escaped.json").exists()


async def test_register_a_file_of_the_data_folder(admin, alice, data_dir):
    (data_dir / "corpora").mkdir(exist_ok=True)
    (data_dir / "corpora" / "web.jsonl").write_bytes(as_jsonl(ALPACA))
    name = unique("web")
    response = await admin.register(name=name, format="alpaca", path="corpora/web.jsonl", visibility="public")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["file_name"] == "corpora/web.jsonl" and dataset["rows"] == len(ALPACA)
    assert dataset["source"] == "file" and info_json(data_dir)[name]["file_name"] == "corpora/web.jsonl"
    # Deleting a registered file's dataset leaves the admin's file alone.
    assert (await admin.delete(dataset["id"])).status_code == 204
    assert (data_dir / "corpora" / "web.jsonl").exists() and name not in info_json(data_dir)
    assert_error(
        await alice.register(name=unique(), format="alpaca", path="corpora/web.jsonl"), 403, "forbidden", "path"
    )


async def test_register_refuses_paths_outside(admin, data_dir, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_bytes(as_json(ALPACA))
    link = data_dir / f"link-{unique()}.json"
    link.symlink_to(secret)
    for path in [
        "../secret.json",
        str(secret),
        "/etc/passwd",
        "a/../../secret.json",
        link.name,
        ".incoming/x.json",
        "uploads/x.json",
        "dataset_info.json",
    ]:
        assert_error(await admin.register(name=unique(), format="alpaca", path=path), 422, "unsafe_path", "path")
    assert_error(await admin.register(name=unique(), format="alpaca", path="nope.json"), 422, "no_such_file", "path")
    (data_dir / "bad.json").write_bytes(b'[{"instruction": "x"}]')
    error = assert_error(
        await admin.register(name=unique(), format="alpaca", path="bad.json"), 422, "invalid_dataset", "path"
    )
    assert "row 1: missing `output`" in error["message"]


async def test_register_from_a_hub_only_where_one_is_reachable(alice):
    assert_error(
        await alice.register(name=unique(), format="alpaca", hub="huggingface", hub_id="org/data"),
        422,
        "hub_unreachable",
        "hub",
    )
    assert_error(await alice.register(name=unique(), format="alpaca"), 422, "invalid_field", "path")
    assert_error(
        await alice.register(name=unique(), format="alpaca", hub="huggingface", hub_id="../../etc"),
        422,
        "invalid_field",
        "hub_id",
    )
