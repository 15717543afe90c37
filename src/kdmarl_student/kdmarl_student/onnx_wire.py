"""Refuse ONNX models whose tensors live outside the model file (ONNX "external data").

Why: the manifest's sha256 and the signature cover the bytes of ``agent_*.onnx`` only. A tensor stored as
external data (``TensorProto.data_location = EXTERNAL`` with ``external_data`` entries naming another file)
is read by ONNX Runtime from that other file, which nothing checks: a tampered weights file would load
under a valid signature. Bundles never need it (external data exists for models above protobuf's 2 GB
limit; students are kilobytes), so the runtime refuses every model that uses it, anywhere.

How, without the ``onnx`` package (robots do not install it): a small walker of the protobuf wire format
that descends only into the message fields that can hold a ``TensorProto`` -- the graph's initializers,
sparse initializers, node attributes (``t``, ``tensors``, ``sparse_tensor(s)``), subgraphs (``g``,
``graphs``, e.g. the branches of ``If`` and the body of ``Loop``), model-local functions and training-info
graphs -- and skips every other field by its length (weights are never copied or decoded). ONNX Runtime
itself has no run-time switch to refuse external data (only a build option,
``onnxruntime_DISABLE_EXTERNAL_INITIALIZERS``; microsoft/onnxruntime#7548, #7635), and loading from bytes
does not disable it either: ORT then resolves the file names against a default directory instead of the
bundle. So the refusal is this explicit check, run on the very bytes handed to ONNX Runtime.

Fail closed: wire data this walker cannot parse (truncated fields, groups, nesting deeper than protobuf's
own limit of 100) is refused as "not an ONNX model" rather than skipped. Field numbers are those of
``onnx/onnx.proto`` (IR version 10).
"""

from __future__ import annotations

from pathlib import Path

from kdmarl_student.errors import BundleError

MAX_DEPTH = 100  # protobuf's default recursion limit: ORT would refuse anything deeper anyway

# message kind -> {field number: (field name, kind of the sub-message)}; only fields that lead to tensors.
_CHILDREN: dict[str, dict[int, tuple[str, str]]] = {
    "model": {7: ("graph", "graph"), 20: ("training_info", "training"), 25: ("functions", "function")},
    "training": {1: ("initialization", "graph"), 2: ("algorithm", "graph")},
    "graph": {1: ("node", "node"), 5: ("initializer", "tensor"), 15: ("sparse_initializer", "sparse")},
    "function": {7: ("node", "node"), 11: ("attribute_proto", "attribute")},
    "node": {5: ("attribute", "attribute")},
    "attribute": {5: ("t", "tensor"), 6: ("g", "graph"), 10: ("tensors", "tensor"), 11: ("graphs", "graph"),
                  22: ("sparse_tensor", "sparse"), 23: ("sparse_tensors", "sparse")},
    "sparse": {1: ("values", "tensor"), 2: ("indices", "tensor")},
    "tensor": {},
}
_SINGULAR = frozenset({"graph", "initialization", "algorithm", "t", "g", "sparse_tensor", "values", "indices"})
_TENSOR_EXTERNAL_DATA = 13  # repeated StringStringEntryProto external_data
_TENSOR_DATA_LOCATION = 14  # DataLocation data_location (DEFAULT = 0, EXTERNAL = 1)
_LENGTH_DELIMITED, _VARINT = 2, 0


class _MalformedError(Exception):
    """The bytes are not protobuf wire format (the caller turns this into a ``BundleError``)."""


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; returns (value, position after it)."""
    value = shift = 0
    while pos < end and shift < 70:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _MalformedError(f"truncated or overlong varint before byte {pos}")


def _fields(data: bytes, start: int, end: int):
    """Yield (field number, wire type, value or (start, end) of a length-delimited payload) of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _MalformedError(f"field number 0 at byte {pos}")
        if wire == _VARINT:
            value, pos = _varint(data, pos, end)
            yield number, wire, value
        elif wire == _LENGTH_DELIMITED:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise _MalformedError(f"field {number} runs past the end of its message (byte {pos})")
            yield number, wire, (pos, pos + length)
            pos += length
        elif wire in (1, 5):  # fixed64, fixed32
            pos += 8 if wire == 1 else 4
            if pos > end:
                raise _MalformedError(f"field {number} runs past the end of its message")
        else:  # 3, 4: groups, never written by ONNX; 6, 7: invalid
            raise _MalformedError(f"wire type {wire} (field {number}) at byte {pos}")


def _external_field(data: bytes, start: int, end: int) -> str | None:
    """``"external_data"`` or ``"data_location"`` if this TensorProto keeps its data outside the file."""
    for number, wire, value in _fields(data, start, end):
        if number == _TENSOR_EXTERNAL_DATA and wire == _LENGTH_DELIMITED:
            return "external_data"
        if number == _TENSOR_DATA_LOCATION and wire == _VARINT and value != 0:
            return "data_location"
    return None


def find_external_data(data: bytes) -> str | None:
    """Where the first tensor with external data is (``graph.initializer[0].external_data``), else ``None``.

    The model is expected in ONNX protobuf format: :func:`kdmarl_student.policy.open_session` makes ONNX
    Runtime parse it as such too (``session.load_model_format = ONNX``), so both read the same fields.

    Raises ``_MalformedError`` when the bytes are not a protobuf message.
    """
    stack: list[tuple[str, int, int, str, int]] = [("model", 0, len(data), "", 0)]
    while stack:
        kind, start, end, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _MalformedError(f"messages nested deeper than {MAX_DEPTH} at {where}")
        if kind == "tensor":
            found = _external_field(data, start, end)
            if found:
                return f"{where}.{found}"
            continue
        children, counts, found_children = _CHILDREN[kind], {}, []
        for number, wire, value in _fields(data, start, end):
            if number in children and wire == _LENGTH_DELIMITED:
                name, child_kind = children[number]
                index = counts.get(name, 0)
                counts[name] = index + 1
                step = name if name in _SINGULAR else f"{name}[{index}]"
                child_where = f"{where}.{step}" if where else step
                found_children.append((child_kind, *value, child_where, depth + 1))
        stack.extend(reversed(found_children))  # depth first, in file order
    return None


# The walker's pieces, shared with :mod:`kdmarl_student.onnx_graph` (the operator allowlist reads the same bytes).
MalformedError = _MalformedError
fields = _fields


def refuse_external_data(data: bytes, path: str | Path) -> None:
    """Raise ``BundleError(path, <tensor>, ...)`` if the model uses external data or is not protobuf."""
    try:
        where = find_external_data(data)
    except _MalformedError as exc:
        raise BundleError(path, "", f"an ONNX model (protobuf ModelProto): {exc}") from exc
    if where is not None:
        raise BundleError(path, where, "every tensor stored inside the model file; this one is ONNX external data "
                          "(another file, which neither the sha256 nor the signature covers: refused)")
