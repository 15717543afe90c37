"""Accept only the graphs the exporter makes: an operator allowlist and fixed float32 outputs (issue 22).

Why: sha256 and the signature say a model is the one that was shipped, not that it is harmless. A graph with
a ``Loop`` of 2e9 iterations taken only when ``obs[0] < 0`` is finite and fast on the zero observation, so it
passed every load check and then froze a robot on its first negative reading; logits declared ``int64`` were
acted on as truncated integers. A robot runs MLP and GRU students (and, for comparison, the teacher actor), so
it refuses every operator those exports do not contain, and every output that is not a float32 tensor of a
fixed width.

:data:`ALLOWED_OPS` is what ``torch.onnx.export`` writes for the project's networks at opset 18, with the
current (dynamo) and the legacy exporter, read from real exports: student MLPs (``Gemm``, ``Tanh``/``Relu``),
GRU students (``Split``, ``Sigmoid``, ``Sub``, ``Mul``, ``Add``, and ``Constant``/``Identity`` from the legacy
exporter), teacher actors with input and layer norms, GRU and the masked, padded one-hot input (the shape ops
``Shape``, ``ConstantOfShape``, ``Expand``, ``Concat``, ``Slice``, ``Gather``, ``Reshape``, ``Unsqueeze``,
``Equal``, ``Greater``, ``Where``, ``MatMul``, ``LayerNormalization``); plus the element-wise ``Log``, ``Cos`` and
``Sin`` of the runtime's test probes (:mod:`kdmarl_student.testing`). No control flow (``Loop``, ``Scan``,
``If``), no op that turns values into shapes or indices (``NonZero``, ``TopK``, ``Cast``, ``ArgMax``...), no
custom domain or model-local function.

The check reads the protobuf wire format with :mod:`kdmarl_student.onnx_wire`'s walker (robots do not install
the ``onnx`` package), on the very bytes ONNX Runtime loads, before ONNX Runtime sees them: it runs in
:meth:`kdmarl_student.manifest.Manifest.read_model`, so the robot's runtime and ``kdmarl sign`` (which signs
and verifies with ``read_model``) refuse the same graphs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdmarl_student.errors import BundleError
from kdmarl_student.onnx_wire import MalformedError, fields

ALLOWED_OPS: frozenset[str] = frozenset({
    # student MLPs and GRU cells
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Relu", "Tanh", "Sigmoid", "Split", "Constant", "Identity",
    # teacher actors: input/layer norms and the padded, one-hot, masked input built inside the graph
    "LayerNormalization", "Shape", "ConstantOfShape", "Expand", "Concat", "Slice", "Gather", "Reshape", "Unsqueeze",
    "Equal", "Greater", "Where",
    # the runtime's test probes (element-wise)
    "Log", "Cos", "Sin",
})
DEFAULT_DOMAINS = ("", "ai.onnx")  # the standard operator set; anything else is a custom or contrib op
FLOAT = 1  # TensorProto.FLOAT
ELEM_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
              9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}

# Field numbers of onnx/onnx.proto (IR version 10).
_MODEL_GRAPH, _MODEL_FUNCTIONS, _MODEL_TRAINING = 7, 25, 20
_GRAPH_NODE, _GRAPH_OUTPUT = 1, 12
_NODE_NAME, _NODE_OP_TYPE, _NODE_DOMAIN = 3, 4, 7
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR = 1
_TENSOR_ELEM_TYPE, _TENSOR_SHAPE = 1, 2
_SHAPE_DIM = 1
_DIM_VALUE, _DIM_PARAM = 1, 2


@dataclass(frozen=True)
class GraphOutput:
    """A declared graph output: its name, element type (TensorProto enum, 0 = not a tensor) and dims, each an
    int, a symbolic name (str) or None (unknown)."""

    name: str
    elem_type: int
    dims: tuple[int | str | None, ...] | None  # None: no shape declared


@dataclass(frozen=True)
class GraphSummary:
    """The main graph's nodes as (name, domain, op_type) and its declared outputs; ``functions`` and
    ``training_info`` count the model-local functions and training graphs."""

    nodes: tuple[tuple[str, str, str], ...]
    outputs: tuple[GraphOutput, ...]
    functions: int
    training_info: int


def _text(data: bytes, span: tuple[int, int]) -> str:
    return data[span[0]:span[1]].decode("utf-8", errors="replace")


def _message(data: bytes, start: int, end: int, number: int) -> tuple[int, int] | None:
    """The (start, end) of the last length-delimited field ``number`` of a message (protobuf: last one wins)."""
    found = None
    for field_number, wire, value in fields(data, start, end):
        if field_number == number and wire == 2:
            found = value
    return found


def _output(data: bytes, span: tuple[int, int]) -> GraphOutput:
    name, elem_type, dims = "", 0, None
    for number, wire, value in fields(data, *span):
        if number == _VALUE_NAME and wire == 2:
            name = _text(data, value)
        elif number == _VALUE_TYPE and wire == 2:
            tensor = _message(data, *value, _TYPE_TENSOR)
            if tensor is None:
                continue
            for t_number, t_wire, t_value in fields(data, *tensor):
                if t_number == _TENSOR_ELEM_TYPE and t_wire == 0:
                    elem_type = t_value
                elif t_number == _TENSOR_SHAPE and t_wire == 2:
                    dims = tuple(_dim(data, d_value) for d_number, d_wire, d_value in fields(data, *t_value)
                                 if d_number == _SHAPE_DIM and d_wire == 2)
    return GraphOutput(name, elem_type, dims)


def _dim(data: bytes, span: tuple[int, int]) -> int | str | None:
    for number, wire, value in fields(data, *span):
        if number == _DIM_VALUE and wire == 0:
            return value
        if number == _DIM_PARAM and wire == 2:
            return _text(data, value)
    return None


def summarize(data: bytes) -> GraphSummary:
    """Nodes and declared outputs of a serialized ModelProto; raises ``MalformedError`` for non-protobuf bytes."""
    graph, functions, training = None, 0, 0
    for number, wire, value in fields(data, 0, len(data)):
        if number == _MODEL_GRAPH and wire == 2:
            graph = value
        elif number == _MODEL_FUNCTIONS and wire == 2:
            functions += 1
        elif number == _MODEL_TRAINING and wire == 2:
            training += 1
    if graph is None:
        raise MalformedError("no graph")
    nodes, outputs = [], []
    for number, wire, value in fields(data, *graph):
        if number == _GRAPH_NODE and wire == 2:
            name = domain = op_type = ""
            for n_number, n_wire, n_value in fields(data, *value):
                if n_wire != 2:
                    continue
                if n_number == _NODE_NAME:
                    name = _text(data, n_value)
                elif n_number == _NODE_OP_TYPE:
                    op_type = _text(data, n_value)
                elif n_number == _NODE_DOMAIN:
                    domain = _text(data, n_value)
            nodes.append((name, domain, op_type))
        elif number == _GRAPH_OUTPUT and wire == 2:
            outputs.append(_output(data, value))
    return GraphSummary(tuple(nodes), tuple(outputs), functions, training)


def check_graph(data: bytes, path: str | Path) -> GraphSummary:
    """Refuse (``BundleError`` naming the node and its op, or the output) any graph the exporter would not write:
    an operator outside :data:`ALLOWED_OPS` or outside the standard domain, model-local functions or training
    graphs, an output that is not float32 or whose trailing width is not a fixed number. Returns the summary."""
    try:
        summary = summarize(data)
    except MalformedError as exc:
        raise BundleError(path, "", f"an ONNX model (protobuf ModelProto): {exc}") from exc
    allowed = ", ".join(sorted(ALLOWED_OPS))
    for index, (name, domain, op_type) in enumerate(summary.nodes):
        if domain not in DEFAULT_DOMAINS or op_type not in ALLOWED_OPS:
            op = f"{domain}:{op_type}" if domain not in DEFAULT_DOMAINS else op_type
            raise BundleError(path, f"graph.node[{index}]",
                              f"an operator of the exporter's MLP and GRU graphs ({allowed}); node "
                              f"{name or '(unnamed)'!r} is {op!r} (control flow, custom operators and value-dependent "
                              "shapes are refused)")
    if summary.functions or summary.training_info:
        what = "functions" if summary.functions else "training_info"
        raise BundleError(path, what, f"a plain graph; this model carries {what} (the exporter writes none)")
    for index, output in enumerate(summary.outputs):
        if output.elem_type != FLOAT:
            kind = ELEM_TYPES.get(output.elem_type, f"type {output.elem_type}")
            raise BundleError(path, f"graph.output[{index}].type",
                              f"float32 for output {output.name!r} (logits and states are float32); got {kind}")
        if not output.dims or not isinstance(output.dims[-1], int) or output.dims[-1] < 1:
            raise BundleError(path, f"graph.output[{index}].shape",
                              f"a fixed width for output {output.name!r} ([batch, n] with n a number, as the "
                              f"exporter writes); got {list(output.dims) if output.dims else 'no shape'}")
    return summary


__all__ = ["ALLOWED_OPS", "GraphOutput", "GraphSummary", "check_graph", "summarize"]
