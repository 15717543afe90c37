"""Strict JSON for bundle manifests: one meaning for every reader.

Python's ``json`` accepts duplicate keys (last wins), ``NaN`` and ``Infinity`` and overflows ``1e400`` to ``inf``; a
signed manifest must mean one thing to every reader, so :func:`decode_manifest_json` refuses all of these, integers
longer than :data:`MAX_INT_DIGITS` digits (kept as text until reported, so parsing stays linear) and nesting deeper
than :data:`MAX_JSON_DEPTH`, each with a ``BundleError`` naming the field. Imports only the standard library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kdmarl_student.errors import BundleError

MAX_JSON_DEPTH = 32  # a manifest nests 6 levels deep; the limit keeps every walk over it shallow
MAX_INT_DIGITS = 20  # int64 has 19 digits; longer integers are no count or size of this world


def field_name(parts: Any) -> str:
    """JSON path of a schema error as ``agents[0].model.sha256``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _HugeInt(str):
    """An integer literal with more than ``MAX_INT_DIGITS`` digits, kept as text until it is reported.

    Parsing it as ``int`` would cost quadratic time, or raise a bare ``ValueError`` beyond Python's
    4300-digit limit; keeping it lets :func:`_check_json_values` name the field that holds it.
    """


def _parse_int(text: str) -> int | _HugeInt:
    return _HugeInt(text) if len(text.lstrip("-")) > MAX_INT_DIGITS else int(text)


def _json_value_error(value: Any, depth: int, duplicates: Mapping[int, tuple[dict, str]]) -> tuple[str, str] | None:
    """(relative field, what was expected) if this one JSON value breaks a strict-JSON rule, else None."""
    if depth > MAX_JSON_DEPTH:
        return "", f"JSON nested at most {MAX_JSON_DEPTH} levels deep"
    if isinstance(value, _HugeInt):
        return "", f"an integer of at most {MAX_INT_DIGITS} digits; got {len(value)} characters"
    if isinstance(value, float) and not math.isfinite(value):
        return "", f"a finite number; got {value} (NaN, Infinity or out of float range)"
    if isinstance(value, dict) and id(value) in duplicates:
        expected = "each key once per object; this key repeats (which value counts would depend on the parser)"
        return duplicates[id(value)][1], expected
    return None


def _check_json_values(data: Any, path: Path, duplicates: Mapping[int, tuple[dict, str]]) -> None:
    """Walk the parsed document (iteratively: no recursion to exhaust) and refuse what strict JSON forbids."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(data, (), 0)]
    while stack:
        value, where, depth = stack.pop()
        problem = _json_value_error(value, depth, duplicates)
        if problem is not None:
            extra, expected = problem
            raise BundleError(path, field_name((*where, extra) if extra else where) or "(root)", expected)
        if isinstance(value, dict):
            stack.extend((v, (*where, k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*where, i), depth + 1) for i, v in enumerate(value))
    if duplicates:  # a repeated key inside an object that was itself overwritten by a repeated key
        raise BundleError(path, next(iter(duplicates.values()))[1], "each key once per object; this key repeats")


def decode_manifest_json(payload: bytes, path: Path) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, finite numbers, bounded integers and nesting.

    Python's ``json`` accepts duplicate keys (last wins), ``NaN`` and ``Infinity`` and overflows ``1e400``
    to ``inf``; a signed manifest must mean one thing to every reader, so all of these are refused with a
    ``BundleError`` naming the field. Deep nesting and memory exhaustion also become ``BundleError``.
    """
    duplicates: dict[int, tuple[dict, str]] = {}  # id -> (the object, kept alive so ids stay unique; the key)

    def object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj and id(obj) not in duplicates:
                duplicates[id(obj)] = (obj, key)
            obj[key] = value
        return obj

    try:
        data = json.loads(payload.decode("utf-8"), object_pairs_hook=object_pairs, parse_int=_parse_int)
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise BundleError(path, "", f"valid UTF-8 JSON: {exc}") from exc
    except RecursionError as exc:
        raise BundleError(path, "", f"valid JSON nested at most {MAX_JSON_DEPTH} levels deep") from exc
    except MemoryError as exc:
        raise BundleError(path, "", "valid JSON that fits in this robot's memory once parsed") from exc
    _check_json_values(data, path, duplicates)
    return data


__all__ = ["MAX_INT_DIGITS", "MAX_JSON_DEPTH", "decode_manifest_json", "field_name"]
