"""`llmct datasets upload|list`."""

from __future__ import annotations

from pathlib import Path

import click

from .bodies import dataset_name
from .http import Gateway
from .output import print_json, say, size, table, when

FORMATS = ("alpaca", "sharegpt", "text", "pairwise")
COLUMNS = [
    ("NAME", lambda d: d["name"]),
    ("FORMAT", lambda d: d["format"]),
    ("ROWS", lambda d: d.get("rows")),
    ("SIZE", lambda d: size(d.get("size_bytes"))),
    ("VISIBILITY", lambda d: d["visibility"]),
    ("OWNER", lambda d: d.get("owner")),
    ("CREATED", lambda d: when(d.get("created_at"))),
]


@click.group()
def datasets() -> None:
    """Your datasets and the public ones."""


@datasets.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="the dataset's name (default: the file's, tidied)")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="alpaca", show_default=True)
@click.option("--remark", default="", help="a note shown with the dataset")
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON")
def upload(file: Path, name: str | None, fmt: str, remark: str, as_json: bool) -> None:
    """Upload FILE (.json, .jsonl, .csv, .parquet, or a .zip/.tar/.tar.gz of them) as a private dataset."""
    fields = {"name": name or dataset_name(file), "format": fmt, "remark": remark}
    with Gateway.from_config() as gateway, file.open("rb") as content:
        # The text parts go first (httpx sends data before files): a bad name is refused before the file is sent.
        created = gateway.post("/api/datasets/upload", data=fields, files={"file": (file.name, content)}, timeout=None)
    if as_json:
        print_json(created)
        return
    say(f"uploaded {created['name']}: {created.get('rows')} rows; a job names it: --dataset {created['name']}")
    click.echo(created["name"])


@datasets.command(name="list")
@click.option("--search", "-q", help="part of the name")
@click.option("--format", "fmt", type=click.Choice(FORMATS))
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON (a list of datasets)")
def list_datasets(search: str | None, fmt: str | None, limit: int, as_json: bool) -> None:
    """Your datasets and the public ones, newest first."""
    with Gateway.from_config() as gateway:
        items = gateway.pages("/api/datasets", {"q": search, "format": fmt}, limit)
    if as_json:
        print_json(items)
    else:
        table(items, COLUMNS, "no datasets")
