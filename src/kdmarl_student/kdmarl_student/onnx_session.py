"""Opening an ONNX Runtime session the way a robot runs it: one thread, ONNX format only, a proven provider.

Runtime choices follow rl_sar and NVIDIA's Isaac Sim policy node: ONNX Runtime with one intra-op thread (a robot
runs several processes on few cores; one thread is also the fastest for batch-1 MLPs), and an accelerator
(TensorRT, CUDA) only after a dummy inference proved it works on this device -- ``get_available_providers()``
lists what was compiled in, not what runs. The model is handed over as bytes, checked for ONNX external data
(:mod:`kdmarl_student.onnx_wire`) and for the exporter's operators and outputs (:mod:`kdmarl_student.onnx_graph`)
before ONNX Runtime parses it. :class:`~kdmarl_student.policy.StudentPolicy` builds on this; the exporter's parity
and latency checks and the runtime benchmark use :func:`session_options` so everyone measures the session a
robot runs.

Imports: numpy, onnxruntime. Never torch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from kdmarl_student.bundle_files import MAX_MODEL_BYTES, read_bundle_file
from kdmarl_student.errors import BundleError
from kdmarl_student.onnx_graph import check_graph
from kdmarl_student.onnx_wire import refuse_external_data

LOGGER = logging.getLogger("kdmarl_student.onnx_session")

ACCELERATED_PROVIDERS: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"


def dim_is_dynamic(dim: Any) -> bool:
    return dim is None or isinstance(dim, str)


def _model_bytes(model: bytes | str | Path, source: str | Path | None) -> tuple[bytes, str | Path]:
    """The model as bytes (a path is read once, bounded) and the name errors give it."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), source or "<model bytes>"
    path = Path(model)
    data = read_bundle_file(path, what="an ONNX model file", limit=MAX_MODEL_BYTES, follow_symlinks=True)
    return data, source or path


def session_options(intra_op_num_threads: int = 1) -> ort.SessionOptions:
    """Single-threaded, sequential, quiet, and ONNX (protobuf) format only: the format the external-data
    check of :mod:`kdmarl_student.onnx_wire` walks, so ORT and the check read the same fields.

    The one set of session options: the robot's runtime, the exporter's parity and latency checks and the
    runtime benchmark all measure the session a robot runs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(intra_op_num_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # ORT's own warnings would flood a robot's log on every start
    options.add_session_config_entry("session.load_model_format", "ONNX")
    return options


def open_session(
    model: bytes | str | Path,
    input_name: str,
    input_dim: int,
    *,
    providers: Sequence[str] | str = "auto",
    intra_op_num_threads: int = 1,
    source: str | Path | None = None,
    state_inputs: Mapping[str, int] | None = None,
) -> tuple[ort.InferenceSession, str]:
    """Open an ONNX Runtime session on the first provider that survives a dummy inference.

    ``state_inputs`` names the further float inputs of a recurrent graph and their widths (``{"h_in": H}``):
    the dummy inference feeds them zeros.

    ``model`` is the model's bytes (what :meth:`Manifest.read_model` checked) or a path, which is then read
    once here; either way ONNX Runtime gets bytes, and models with ONNX external data are refused
    (``BundleError``) before ORT sees them, since from bytes ORT would look for those files outside the
    bundle. ``source`` names the model in errors (default: the path, or ``"<model bytes>"``).

    ``providers="auto"`` tries TensorRT, then CUDA (when compiled in), then CPU; an explicit list is
    tried in order the same way. Returns the session and the provider that actually runs it. A model
    ONNX Runtime cannot load raises ``BundleError`` naming the file.
    """
    data, model_path = _model_bytes(model, source)
    refuse_external_data(data, model_path)
    check_graph(data, model_path)  # the exporter's operators only (issue 22); Manifest.read_model checked it too
    options = session_options(intra_op_num_threads)
    available = set(ort.get_available_providers())
    if providers == "auto":
        candidates = [p for p in ACCELERATED_PROVIDERS if p in available] + [CPU_PROVIDER]
    else:
        candidates = [p for p in providers if p in available] or [CPU_PROVIDER]
    dummy = {input_name: np.zeros((1, input_dim), dtype=np.float32)}
    dummy.update({name: np.zeros((1, int(width)), np.float32) for name, width in (state_inputs or {}).items()})
    failures: list[str] = []
    for provider in candidates:
        chain = [provider] if provider == CPU_PROVIDER else [provider, CPU_PROVIDER]
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=chain)
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            if provider == CPU_PROVIDER:
                raise BundleError(model_path, "", f"an ONNX model ONNX Runtime can load: {exc}") from exc
            failures.append(f"{provider}: {exc}")
            continue
        if session.get_providers()[0] != provider:  # ORT fell back silently: the provider did not initialize
            failures.append(f"{provider}: not initialized on this device")
            continue
        if provider == CPU_PROVIDER:
            return session, provider  # the dummy inference on CPU runs after the I/O check, in the caller
        try:
            session.run(None, dummy)
        except Exception as exc:  # a provider that loads but cannot run (driver mismatch, ...)
            failures.append(f"{provider}: dummy inference failed: {exc}")
            continue
        return session, provider
    raise BundleError(model_path, "", f"an execution provider that works; tried {failures}")


Wanted = list[tuple[str, int, str, str]]  # (tensor name, width, manifest field naming it, why that width)


def check_session_io(session: ort.InferenceSession, model_path: str | Path, wanted_in: Wanted,
                     wanted_out: Wanted) -> None:
    """The graph takes exactly ``wanted_in`` as float [batch, width] inputs and gives ``wanted_out`` as float
    [batch, width] outputs (a recurrent graph: observation and state in, logits and state out, under the manifest's
    names); then one dummy run from zeros must give finite values of exactly those widths. ``BundleError`` naming
    the graph field otherwise."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    names = [i.name for i in inputs]
    if sorted(names) != sorted(name for name, _, _, _ in wanted_in):
        listed = " and ".join(f"{name!r} ({where})" for name, _, where, _ in wanted_in)
        count = "one input" if len(wanted_in) == 1 else f"{len(wanted_in)} inputs"
        raise BundleError(model_path, "graph.input", f"{count} named {listed}; got {names}")
    for name, width, _, why in wanted_in:
        k = names.index(name)
        shape = list(inputs[k].shape)
        if inputs[k].type != "tensor(float)":
            raise BundleError(model_path, f"graph.input[{k}].type", f"tensor(float); got {inputs[k].type}")
        if len(shape) != 2 or shape[1] != width:
            raise BundleError(model_path, f"graph.input[{k}].shape",
                              f"[batch, {width}] ({why}) for {name!r}; got {shape}")
        if not dim_is_dynamic(shape[0]) and shape[0] != 1:
            raise BundleError(model_path, f"graph.input[{k}].shape[0]", f"a dynamic batch axis (or 1); got {shape[0]}")
    out_names = [o.name for o in outputs]
    for name, width, where, why in wanted_out:
        if name not in out_names:
            raise BundleError(model_path, "graph.output", f"an output named {name!r} ({where}); got {out_names}")
        k = out_names.index(name)
        if outputs[k].type != "tensor(float)":
            raise BundleError(model_path, f"graph.output[{k}].type",
                              f"tensor(float) for {name!r}; got {outputs[k].type}")
        out_shape = list(outputs[k].shape)
        if len(out_shape) != 2 or (not dim_is_dynamic(out_shape[1]) and out_shape[1] != width):
            raise BundleError(model_path, f"graph.output[{k}].shape", f"[batch, {width}] ({why}) for {name!r}; "
                              f"got {out_shape}")
    feeds = {name: np.zeros((1, width), np.float32) for name, width, _, _ in wanted_in}
    try:
        results = session.run([name for name, _, _, _ in wanted_out], feeds)
    except Exception as exc:
        raise BundleError(model_path, "", f"a model that runs on a dummy observation: {exc}") from exc
    for (name, width, _, why), value in zip(wanted_out, results, strict=True):
        k = out_names.index(name)
        if value.shape != (1, width):
            raise BundleError(model_path, f"graph.output[{k}].shape",
                              f"[1, {width}] ({why}) for {name!r} on a batch-1 dummy inference; got "
                              f"{list(value.shape)}")
        if not np.isfinite(value).all():
            raise BundleError(model_path, "graph.output",
                              f"finite {name!r} on the all-zero dummy observation; got {value[0].tolist()}")


__all__ = ["ACCELERATED_PROVIDERS", "CPU_PROVIDER", "check_session_io", "dim_is_dynamic", "open_session",
           "session_options"]
