"""Dump the keys LLaMA-Factory accepts, and their types, to the JSON the scheduler checks overrides against.

Runs in the engine's own interpreter (.venv-engine: llamafactory, transformers), never the platform's; the
scheduler only reads its output, services/scheduler/rendering/engine_args.json. Rerun it whenever the pinned
engine changes (tests/integration/engine/test_engine_args.py fails while the checked-in file is stale):

    .venv-engine/bin/python engine/engine_args.py            # rewrite the checked-in file
    .venv-engine/bin/python engine/engine_args.py --stdout   # print it instead

Each field's type is reduced to what a YAML value can be: bool, int, float, str, dict, list, null, or
"object" (a Python object no YAML value can be); enums and Literals keep their choices, lists their item types.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import pathlib
import sys
import types
import typing
from importlib.metadata import version
from typing import Any

OUT = pathlib.Path(__file__).resolve().parents[1] / "services" / "scheduler" / "rendering" / "engine_args.json"
SCALARS = {bool: "bool", int: "int", float: "float", str: "str", type(None): "null", pathlib.Path: "str"}


def _members(tp: Any) -> list[Any]:
    """A union's members; anything else alone."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(tp) for m in _members(arg)]
    return [tp]


def _member(tp: Any) -> tuple[set[str], list[Any] | None, set[str]]:
    """One union member: its kinds, its choices (None: any value of those kinds) and a list's item kinds."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        values = list(typing.get_args(tp))
        return {SCALARS[type(v)] for v in values}, values, set()
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        return {SCALARS[type(v)] for v in values}, values, set()
    if tp in SCALARS:
        return {SCALARS[tp]}, None, set()
    if tp is dict or origin is dict:
        return {"dict"}, None, set()
    if tp is list or origin is list:
        items: set[str] = set()
        for arg in typing.get_args(tp) or (str,):
            for m in _members(arg):
                items |= _member(m)[0]
        return {"list"}, None, items
    return {"object"}, None, set()


def field_spec(tp: Any) -> dict[str, Any]:
    """What a YAML value of a field of type `tp` may be."""
    kinds: set[str] = set()
    items: set[str] = set()
    choices: list[Any] | None = []
    for member in _members(tp):
        member_kinds, member_choices, member_items = _member(member)
        kinds |= member_kinds
        items |= member_items
        if member_choices is None and member_kinds != {"null"}:
            choices = None  # a free value of that kind is allowed too
        elif choices is not None and member_choices is not None:
            choices += [c for c in member_choices if c not in choices]
    spec: dict[str, Any] = {"types": sorted(kinds)}
    if choices:
        spec["choices"] = choices
    if items:
        spec["items"] = sorted(items)
    return spec


def class_fields(cls: type) -> dict[str, dict[str, Any]]:
    """The init fields of one argument dataclass (its bases' included), by name."""
    hints = typing.get_type_hints(cls)
    return {f.name: field_spec(hints.get(f.name, f.type)) for f in dataclasses.fields(cls) if f.init}


def dump() -> dict[str, Any]:
    """Every parser the engine's commands use, and the fields of each of their argument classes."""
    from llamafactory.hparams import parser

    parsers = {"train": parser._TRAIN_ARGS, "infer": parser._INFER_ARGS, "eval": parser._EVAL_ARGS}
    classes = {cls.__name__: cls for group in parsers.values() for cls in group}
    return {
        "generated_by": "engine/engine_args.py",
        "versions": {name: version(name) for name in ("llamafactory", "transformers")},
        "parsers": {name: [cls.__name__ for cls in group] for name, group in parsers.items()},
        "classes": {name: class_fields(classes[name]) for name in sorted(classes)},
    }


def main(argv: list[str]) -> int:
    text = json.dumps(dump(), indent=1, sort_keys=False) + "\n"
    if argv[1:] == ["--stdout"]:
        sys.stdout.write(text)
    elif not argv[1:]:
        OUT.write_text(text)
        print(f"wrote {OUT}")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
