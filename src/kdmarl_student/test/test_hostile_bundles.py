"""Hostile bundles (issues 5 and 9): every attack is refused with a BundleError that names the file and the field.

``CORPUS`` is the one table of attacks: an id, how to damage a pristine bundle, the file the error must name
(path suffix), the field it must name (``""``: the whole file) and optionally words the message must hold.
A new attack is a new row. Attacks that need more than "load and expect a BundleError" have their own tests
below: the model swapped while it is loaded (a race), and files that blocked or exhausted the old loader
(FIFOs, ``/dev/zero``, memory), which run in a subprocess with a timeout and a memory limit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from kdmarl_student.bundle_files import MAX_MANIFEST_BYTES, MAX_MODEL_BYTES, MAX_SIGNATURE_BYTES
from kdmarl_student.errors import BundleError, SignatureError
from kdmarl_student.manifest import MAX_JSON_DEPTH
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.signing import generate_keypair, load_private_key, sign_bundle
from kdmarl_student.testing import write_onnx_compute_bomb
from test_support_bundles import edit_manifest, install_model, make_bundle, random_mlp, sha256, write_onnx_mlp

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.external_data_helper import set_external_data  # noqa: E402

Damage = Callable[[Path], "dict[str, Any] | None"]  # returns extra StudentPolicy arguments, if any


class Attack(NamedTuple):
    id: str
    damage: Damage
    suffix: str  # the error's path ends with this
    field: str  # the error's field, exactly
    says: str = ""  # words the message must contain


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _, _ = make_bundle(tmp_path_factory.mktemp("hostile") / "pristine")
    return path


def _fresh_copy(pristine: Path, tmp_path: Path, name: str) -> Path:
    """Each test damages its own copy of a module-scoped pristine bundle."""
    copy = tmp_path / name
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    return _fresh_copy(pristine, tmp_path, "bundle")


# ------------------------------------------------------------------------------------------- damage kit
def _edit(edit: Callable[[dict], Any]) -> Damage:
    return lambda bundle: edit_manifest(bundle, edit)


def _text(transform: Callable[[str], str]) -> Damage:
    """Rewrite manifest.json as text: for what ``json.dumps`` cannot write (duplicate keys, 1e400, ...)."""
    def damage(bundle: Path) -> None:
        path = bundle / "manifest.json"
        path.write_text(transform(path.read_text()))

    return damage


def _replace_first(old: str, new: str) -> Damage:
    def transform(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return _text(transform)


def _nested_params(depth: int) -> Damage:
    """``scenario.params.deep`` nested ``depth`` lists deep (scenario.params is free-form in the schema)."""
    def damage(bundle: Path) -> None:
        edit_manifest(bundle, lambda d: d["scenario"]["params"].__setitem__("deep", "@@deep@@"))
        _replace_first('"@@deep@@"', "[" * depth + "]" * depth)(bundle)

    return damage


def _write_manifest(content: bytes) -> Damage:
    return lambda bundle: (bundle / "manifest.json").write_bytes(content) and None


def _symlink_manifest(bundle: Path) -> None:
    real = bundle / "real_manifest.json"
    (bundle / "manifest.json").rename(real)
    os.symlink(real, bundle / "manifest.json")


def _pad(name: str, size: int) -> Damage:
    """Append whitespace: the file stays valid JSON (and a valid signature document) but grows to ``size``."""
    def damage(bundle: Path) -> None:
        path = bundle / name
        path.write_bytes(path.read_bytes() + b" " * (size - path.stat().st_size))

    return damage


def _keys(bundle: Path, name: str = "team") -> tuple[Path, Path]:
    private, public = bundle.parent / "keys" / f"{name}.key", bundle.parent / "keys" / f"{name}.pub"
    generate_keypair(private, public)
    return private, public


def _signed(then: Callable[[Path], Any] | None = None, signer: str = "team") -> Damage:
    """Sign the bundle (with the node's key or another one), then damage it; the node trusts ``team.pub``."""
    def damage(bundle: Path) -> dict[str, Any]:
        _, public = _keys(bundle)
        private = _keys(bundle, signer)[0] if signer != "team" else bundle.parent / "keys" / "team.key"
        sign_bundle(bundle, load_private_key(private))
        if then is not None:
            then(bundle)
        return {"public_key": public}

    return damage


def _unsigned_with_key(bundle: Path) -> dict[str, Any]:
    return {"public_key": _keys(bundle)[1]}


def _symlink_signature(bundle: Path) -> None:
    real = bundle.parent / "elsewhere.sig"
    (bundle / "manifest.sig").rename(real)
    os.symlink(real, bundle / "manifest.sig")


def _model_file(write: Callable[[Path], Any], agent_index: int = 0) -> Damage:
    """Write a new agent_0.onnx and list it in the manifest with its true sha256 and size."""
    def damage(bundle: Path) -> None:
        path = bundle / f"agent_{agent_index}.onnx"
        write(path)
        install_model(bundle, agent_index, path)

    return damage


def _append_byte(bundle: Path) -> None:
    with open(bundle / "agent_0.onnx", "ab") as handle:
        handle.write(b"\0")


def _model_over_cap(bundle: Path) -> None:
    """A sparse file one byte above the cap, and no ``model.bytes`` to compare with: the cap must hold alone."""
    edit_manifest(bundle, lambda d: d["agents"][0]["model"].pop("bytes"))
    with open(bundle / "agent_0.onnx", "r+b") as handle:
        handle.truncate(MAX_MODEL_BYTES + 1)


def _symlink_model_outside(bundle: Path) -> None:
    outside = bundle.parent / "outside.onnx"
    shutil.copy(bundle / "agent_0.onnx", outside)
    (bundle / "agent_0.onnx").unlink()
    os.symlink(outside, bundle / "agent_0.onnx")


def _nan_weights(path: Path) -> None:
    weights = random_mlp([18, 16, 5], seed=0)
    weights[-1][1][2] = np.nan  # one NaN bias: every output row has a NaN logit
    write_onnx_mlp(path, weights)


# ------------------------------------------------------------------------------- ONNX external data
def _externalize(tensor: Any, bundle: Path, location: str, tamper: bool = False) -> None:
    """Move a tensor's bytes to ``bundle/location`` as ONNX external data (optionally tampered there)."""
    data = bytes(tensor.raw_data)
    (bundle / location).write_bytes(bytes(b ^ 0x55 for b in data) if tamper else data)
    set_external_data(tensor, location=location, offset=0, length=len(data))
    tensor.ClearField("raw_data")


def _rename_output(model: Any, new: str) -> None:
    """The last node writes ``logits``; let it write ``new`` so a test node can come after it."""
    model.graph.node[-1].output[0] = new


def _constant_external(bundle: Path, output: str, location: str) -> Any:
    zeros = numpy_helper.from_array(np.zeros(5, np.float32), f"{output}_value")
    _externalize(zeros, bundle, location)
    return helper.make_node("Constant", [], [output], value=zeros)


def _initializer_external(model: Any, bundle: Path) -> None:
    _externalize(model.graph.initializer[0], bundle, "agent_0.weights", tamper=True)


def _sparse_initializer_external(model: Any, bundle: Path) -> None:
    dense = next(t for t in model.graph.initializer if t.name == "w1")
    array = numpy_helper.to_array(dense)
    model.graph.initializer.remove(dense)
    values = numpy_helper.from_array(array.ravel(), "w1")
    indices = numpy_helper.from_array(np.arange(array.size, dtype=np.int64), "w1_indices")
    _externalize(values, bundle, "agent_0.sparse")
    model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, list(array.shape)))


def _subgraph_external(model: Any, bundle: Path) -> None:
    """An ``If`` whose branches produce a bias from a Constant kept in external data."""
    _rename_output(model, "pre")
    branches = {
        side: helper.make_graph([_constant_external(bundle, f"{side}_c", f"agent_0.{side}")], side, [],
                                [helper.make_tensor_value_info(f"{side}_c", TensorProto.FLOAT, [5])])
        for side in ("then", "else")
    }
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    model.graph.node.insert(0, helper.make_node("If", ["cond"], ["c"], then_branch=branches["then"],
                                                else_branch=branches["else"]))
    model.graph.node.append(helper.make_node("Add", ["pre", "c"], ["logits"]))


def _function_external(model: Any, bundle: Path) -> None:
    """A model-local function whose Constant keeps its tensor in external data."""
    _rename_output(model, "pre")
    function = helper.make_function(
        "kdmarl.test", "AddZero", ["x"], ["y"],
        [_constant_external(bundle, "z", "agent_0.function"), helper.make_node("Add", ["x", "z"], ["y"])],
        [helper.make_opsetid("", 17)],
    )
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("kdmarl.test", 1))
    model.graph.node.append(helper.make_node("AddZero", ["pre"], ["logits"], domain="kdmarl.test"))


def _onnx_change(change: Callable[[Any, Path], None], name: str = "agent_0.onnx") -> Damage:
    """Load a bundle model with ``onnx``, change it, save it, list it with its true sha256 (and size)."""
    def damage(bundle: Path) -> None:
        path = bundle / name
        model = onnx.load(str(path))
        change(model, bundle)
        onnx.save(model, str(path))
        if name == "teacher_actor.onnx":
            edit_manifest(bundle, lambda d: d["teacher"].__setitem__("sha256", sha256(path)))
        else:
            install_model(bundle, 0, path)

    return damage


def _teacher(damage: Damage) -> Damage:
    return lambda bundle: damage(bundle) or {"model": "teacher"}


# ------------------------------------------------------------------------- graphs the exporter never writes
def _graph_model(nodes: list[Any], outputs: list[Any], inits: list[Any],
                 opsets: tuple[tuple[str, int], ...] = (("", 17),)) -> Any:
    graph = helper.make_graph(nodes, "hostile", [helper.make_tensor_value_info("observation", TensorProto.FLOAT,
                                                                               ["batch", 18])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                              producer_name="kdmarl-tests")
    model.ir_version = 8
    return model


def _logits(width: Any = 5, elem: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info("logits", elem, ["batch", width])


_W = numpy_helper.from_array(np.random.default_rng(1).normal(size=(18, 5)).astype(np.float32), "w")


def _save(model: Any, path: Path, check: bool = True) -> None:
    if check:
        onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _if_graph(path: Path) -> None:
    """logits = obs @ W + (If obs sums positive: 0 else 1): control flow, fine on the zero observation."""
    branch = {side: helper.make_graph([helper.make_node("Constant", [], [f"{side}_c"],
                                                        value=numpy_helper.from_array(np.full(5, v, np.float32)))],
                                      side, [], [helper.make_tensor_value_info(f"{side}_c", TensorProto.FLOAT, [5])])
              for side, v in (("then", 0.0), ("else", 1.0))}
    nodes = [helper.make_node("ReduceSum", ["observation"], ["total"], keepdims=0),
             helper.make_node("Greater", ["total", "zero"], ["positive"]),
             helper.make_node("If", ["positive"], ["c"], then_branch=branch["then"], else_branch=branch["else"]),
             helper.make_node("MatMul", ["observation", "w"], ["mm"]), helper.make_node("Add", ["mm", "c"], ["logits"])]
    _save(_graph_model(nodes, [_logits()], [_W, numpy_helper.from_array(np.array(0.0, np.float32), "zero")]), path)


def _scan_graph(path: Path) -> None:
    """logits = obs @ W + a running sum computed by Scan over the batch."""
    body = helper.make_graph([helper.make_node("Add", ["acc_in", "row"], ["acc_out"]),
                              helper.make_node("Identity", ["acc_out"], ["scan_out"])], "scan_body",
                             [helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [5]),
                              helper.make_tensor_value_info("row", TensorProto.FLOAT, [5])],
                             [helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [5]),
                              helper.make_tensor_value_info("scan_out", TensorProto.FLOAT, [5])])
    nodes = [helper.make_node("MatMul", ["observation", "w"], ["logits_pre"]),
             helper.make_node("Scan", ["acc0", "logits_pre"], ["acc", "logits"], body=body, num_scan_inputs=1)]
    _save(_graph_model(nodes, [_logits()], [_W, numpy_helper.from_array(np.zeros(5, np.float32), "acc0")]), path)


def _custom_domain_graph(path: Path) -> None:
    """An ONNX Runtime contrib operator (com.microsoft Gelu): not in the standard operator set."""
    nodes = [helper.make_node("MatMul", ["observation", "w"], ["mm"]),
             helper.make_node("Gelu", ["mm"], ["logits"], domain="com.microsoft")]
    _save(_graph_model(nodes, [_logits()], [_W], (("", 17), ("com.microsoft", 1))), path, check=False)


def _integer_logits(path: Path) -> None:
    """Logits declared int64 (a Cast at the end): ArgMax over truncated integers would be acted on."""
    nodes = [helper.make_node("MatMul", ["observation", "w"], ["mm"]),
             helper.make_node("Cast", ["mm"], ["logits"], to=TensorProto.INT64)]
    _save(_graph_model(nodes, [_logits(elem=TensorProto.INT64)], [_W]), path)


def _data_dependent_width(path: Path) -> None:
    """Allowed operators only, but the logits' width depends on the data: 5 when obs[0, 0] >= 0, else 3
    (declared ``[batch, width]``): fine on the dummy inference, a short output on a negative reading."""
    nodes = [helper.make_node("MatMul", ["observation", "w"], ["mm"]),
             helper.make_node("Gather", ["observation", "i0"], ["column"], axis=1),
             helper.make_node("Gather", ["column", "i0"], ["x00"], axis=0),
             helper.make_node("Greater", ["zero", "x00"], ["negative"]),
             helper.make_node("Where", ["negative", "three", "five"], ["end"]),
             helper.make_node("Slice", ["mm", "start", "end", "axis1"], ["logits"])]
    inits = [_W, numpy_helper.from_array(np.array(0, np.int64), "i0"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array([3], np.int64), "three"),
             numpy_helper.from_array(np.array([5], np.int64), "five"),
             numpy_helper.from_array(np.array([0], np.int64), "start"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    _save(_graph_model(nodes, [_logits("width")], inits), path)


def _agents(edit: Callable[[list], Any]) -> Damage:
    return _edit(lambda d: edit(d["agents"]))


def _six_hundred_agents(agents: list) -> None:
    """Issue 22's probe: 600 copies of agent_0 (renamed) for simple_spread N=3."""
    first = agents[0]
    agents[:] = [{**json.loads(json.dumps(first)), "name": f"agent_{i}"} for i in range(600)]


# -------------------------------------------------------------------------------------------- corpus
EXTERNAL = "external_data"
CORPUS: list[Attack] = [
    # the manifest file
    Attack("manifest_missing", lambda b: (b / "manifest.json").unlink(), "manifest.json", "", "missing"),
    Attack("bundle_directory_missing", shutil.rmtree, "bundle", ""),
    Attack("manifest_not_json", _write_manifest(b"{not json"), "manifest.json", "", "JSON"),
    Attack("manifest_empty", _write_manifest(b""), "manifest.json", "", "JSON"),
    Attack("manifest_not_utf8", _write_manifest(b"\xff\xfe"), "manifest.json", "", "JSON"),
    Attack("manifest_not_an_object", _write_manifest(b"[1, 2]"), "manifest.json", "", "JSON"),
    Attack("manifest_symlink", _symlink_manifest, "manifest.json", "", "symlink"),
    Attack("manifest_over_1_mib", _pad("manifest.json", MAX_MANIFEST_BYTES + 1), "manifest.json", "", "at most"),
    # strict JSON
    Attack("duplicate_key_top_level", _replace_first('"schema_version": "1.1"',
                                                     '"schema_version": "9.9", "schema_version": "1.1"'),
           "manifest.json", "schema_version", "once"),
    Attack("duplicate_key_in_model", _replace_first('"file": "agent_0.onnx"',
                                                    '"file": "agent_1.onnx", "file": "agent_0.onnx"'),
           "manifest.json", "agents[0].model.file", "once"),
    Attack("nan_number", _edit(lambda d: d["agents"][0].__setitem__("control_rate_hz", float("nan"))),
           "manifest.json", "agents[0].control_rate_hz", "finite"),
    Attack("infinity_number", _edit(lambda d: d["agents"][0]["budget"].__setitem__("max_latency_ms", float("inf"))),
           "manifest.json", "agents[0].budget.max_latency_ms", "finite"),
    Attack("number_overflowing_to_inf", _replace_first('"control_rate_hz": 10.0', '"control_rate_hz": 1e400'),
           "manifest.json", "agents[0].control_rate_hz", "finite"),
    Attack("integer_of_5000_digits", _replace_first('"source_dim": 18', '"source_dim": 1' + "0" * 4999),
           "manifest.json", "agents[0].observation.source_dim", "digits"),
    Attack("nesting_too_deep", _nested_params(50), "manifest.json",
           "scenario.params.deep" + "[0]" * (MAX_JSON_DEPTH - 2), "nested"),
    Attack("nesting_beyond_recursion", _nested_params(100_000), "manifest.json", "", "nested"),
    # the schema and the cross-field rules
    Attack("schema_version_unknown", _edit(lambda d: d.__setitem__("schema_version", "9.9")), "manifest.json",
           "schema_version"),
    Attack("schema_version_null", _edit(lambda d: d.__setitem__("schema_version", None)), "manifest.json",
           "schema_version"),
    Attack("schema_version_int", _edit(lambda d: d.__setitem__("schema_version", 1)), "manifest.json",
           "schema_version"),
    Attack("schema_version_old", _edit(lambda d: d.__setitem__("schema_version", "0.1")), "manifest.json",
           "schema_version"),
    Attack("schema_violation", _edit(lambda d: d["agents"][1]["action"].__setitem__("n_actions", "five")),
           "manifest.json", "agents[1].action.n_actions"),
    Attack("unknown_field_in_agent", _edit(lambda d: d["agents"][0].__setitem__("firmware_url", "http://x")),
           "manifest.json", "agents[0].firmware_url"),
    Attack("unknown_field_in_model", _edit(lambda d: d["agents"][0]["model"].__setitem__("weights", "w.bin")),
           "manifest.json", "agents[0].model.weights"),
    Attack("unknown_field_in_budget", _edit(lambda d: d["agents"][0]["budget"].__setitem__("max_watts", 5)),
           "manifest.json", "agents[0].budget.max_watts"),
    Attack("unknown_field_in_teacher", _edit(lambda d: d["teacher"].__setitem__("weights", "w.bin")),
           "manifest.json", "teacher.weights"),
    Attack("unknown_agent", lambda b: {"agent": "agent_7"}, "manifest.json", "agents[].name", "agent_0"),
    Attack("duplicate_agent_names", _edit(lambda d: d["agents"][1].__setitem__("name", "agent_0")),
           "manifest.json", "agents[].name"),
    Attack("layout_slice_outside_observation",
           _edit(lambda d: d["agents"][0]["observation"]["layout"].__setitem__("comm", [14, 40])),
           "manifest.json", "agents[0].observation.layout.comm"),
    Attack("input_dim_disagrees_with_sensing",
           lambda b: edit_manifest(b, lambda d: d["agents"][2]["observation"].__setitem__("input_dim", 12))
           or {"agent": "agent_2"}, "manifest.json", "agents[2].observation.input_dim"),
    Attack("sensing_names_unknown_slice",
           _edit(lambda d: d["agents"][0]["observation"]["sensing"].__setitem__("slices", ["lidar"])),
           "manifest.json", "agents[0].observation.sensing"),
    # the signature
    Attack("signature_required_without_key", lambda b: {"require_signature": True}, "manifest.json", "",
           "public key"),
    Attack("signature_missing", _unsigned_with_key, "manifest.sig", "", "missing"),
    Attack("signature_by_another_key", _signed(signer="other"), "manifest.sig", "signature", "signed by key"),
    Attack("manifest_changed_after_signing", _signed(_edit(lambda d: d.__setitem__("created", "tampered"))),
           "manifest.sig", "signature"),
    Attack("signature_over_16_kib", _signed(_pad("manifest.sig", MAX_SIGNATURE_BYTES + 1)), "manifest.sig", "",
           "at most"),
    Attack("signature_symlink", _signed(_symlink_signature), "manifest.sig", "", "symlink"),
    # the model file
    Attack("model_missing", lambda b: (b / "agent_0.onnx").unlink(), "agent_0.onnx", "", "missing"),
    Attack("model_sha256_mismatch", lambda b: write_onnx_mlp(b / "agent_0.onnx", random_mlp([18, 16, 5], 99))
           and None, "agent_0.onnx", "agents[0].model.sha256"),
    Attack("model_bytes_mismatch", _append_byte, "agent_0.onnx", "agents[0].model.bytes", "before reading"),
    Attack("model_over_size_cap", _model_over_cap, "agent_0.onnx", "", "at most"),
    *[Attack(f"model_path_escapes_{i}", _edit(lambda d, n=name: d["agents"][0]["model"].__setitem__("file", n)),
             "manifest.json", "agents[0].model.file")
      for i, name in enumerate(["../agent_0.onnx", "/etc/agent_0.onnx", "sub/agent_0.onnx", "..\\agent_0.onnx"])],
    Attack("model_symlink_outside_bundle", _symlink_model_outside, "manifest.json", "agents[0].model.file",
           "resolves"),
    Attack("onnx_input_width_disagrees", _model_file(lambda p: write_onnx_mlp(p, random_mlp([12, 16, 5], 1))),
           "agent_0.onnx", "graph.input[0].shape", "18"),
    Attack("onnx_output_width_disagrees", _model_file(lambda p: write_onnx_mlp(p, random_mlp([18, 16, 4], 1))),
           "agent_0.onnx", "graph.output[0].shape"),
    Attack("onnx_input_name_disagrees",
           _model_file(lambda p: write_onnx_mlp(p, random_mlp([18, 16, 5], 1), input_name="x")),
           "agent_0.onnx", "graph.input"),
    *[Attack(f"onnx_not_a_model_{i}", _model_file(lambda p, c=content: p.write_bytes(c)), "agent_0.onnx", "", "ONNX")
      for i, content in enumerate([b"this is not an onnx model", b"", b"\x08\x07" * 100])],
    Attack("onnx_nan_weights", _model_file(_nan_weights), "agent_0.onnx", "graph.output", "finite"),
    # ONNX external data: bytes outside the model file, covered by neither sha256 nor signature
    Attack("external_initializer_tampered", _onnx_change(_initializer_external), "agent_0.onnx",
           f"graph.initializer[0].{EXTERNAL}", "external data"),
    Attack("external_sparse_initializer", _onnx_change(_sparse_initializer_external), "agent_0.onnx",
           f"graph.sparse_initializer[0].values.{EXTERNAL}", "external data"),
    Attack("external_constant_in_subgraph", _onnx_change(_subgraph_external), "agent_0.onnx",
           f"graph.node[0].attribute[0].g.node[0].attribute[0].t.{EXTERNAL}", "external data"),
    Attack("external_constant_in_function", _onnx_change(_function_external), "agent_0.onnx",
           f"functions[0].node[0].attribute[0].t.{EXTERNAL}", "external data"),
    Attack("external_initializer_in_teacher", _teacher(_onnx_change(
        lambda m, b: _externalize(m.graph.initializer[0], b, "teacher.weights"), "teacher_actor.onnx")),
        "teacher_actor.onnx", f"graph.initializer[0].{EXTERNAL}", "external data"),
    # operators and outputs the exporter never writes (issue 22): refused before ONNX Runtime sees them
    Attack("compute_bomb_loop", _model_file(lambda p: write_onnx_compute_bomb(p, 18, 5)), "agent_0.onnx",
           "graph.node[4]", "'Loop'"),
    Attack("control_flow_if", _model_file(_if_graph), "agent_0.onnx", "graph.node[0]", "'ReduceSum'"),
    Attack("control_flow_scan", _model_file(_scan_graph), "agent_0.onnx", "graph.node[1]", "'Scan'"),
    Attack("custom_domain_operator", _model_file(_custom_domain_graph), "agent_0.onnx", "graph.node[1]",
           "'com.microsoft:Gelu'"),
    Attack("integer_logits", _model_file(_integer_logits), "agent_0.onnx", "graph.node[1]", "'Cast'"),
    Attack("data_dependent_output_width", _model_file(_data_dependent_width), "agent_0.onnx", "graph.output[0].shape",
           "fixed width"),
    Attack("compute_bomb_in_teacher", _teacher(lambda b: write_onnx_compute_bomb(b / "teacher_actor.onnx", 21, 5)
                                               and edit_manifest(b, lambda d: d["teacher"].__setitem__(
                                                   "sha256", sha256(b / "teacher_actor.onnx")))),
           "teacher_actor.onnx", "graph.node[4]", "'Loop'"),
    # the team must be the scenario's (issue 22): a 600-agent manifest would start 600 nodes
    Attack("six_hundred_agents_for_three", _agents(_six_hundred_agents), "manifest.json", "agents",
           "3 agents"),
    Attack("agent_missing_from_team", _agents(lambda a: a.pop()), "manifest.json", "agents", "got 2"),
    Attack("agents_renamed", _agents(lambda a: a[1].__setitem__("name", "robot_1")), "manifest.json",
           "agents[1].name", "'agent_1'"),
    Attack("agents_reordered", _agents(lambda a: a.reverse()), "manifest.json", "agents[0].name", "'agent_0'"),
    Attack("scenario_unknown", _edit(lambda d: d["scenario"].__setitem__("name", "simple_tag")), "manifest.json",
           "scenario", "simple_spread"),
    Attack("scenario_n_disagrees", _edit(lambda d: d["scenario"]["params"].__setitem__("N", 4)), "manifest.json",
           "agents", "4 agents"),
]


# ----------------------------------------------------------------------------- memory (schema 1.1, issue 11)
# The memory pristine bundle: agent_1 a GRU student (h_in/h_out, H = 8), agent_2 an MLP with delta features of
# self_pos (history, state_dim 2); agent_0 stateless.
RECURRENT_H = 8
MEMORY_SENSING = {"agent_2": {"slices": "all", "history": {"mode": "delta", "slices": ["self_pos"]}}}


@pytest.fixture(scope="module")
def memory_pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _, _ = make_bundle(tmp_path_factory.mktemp("hostile_memory") / "pristine", sensing=MEMORY_SENSING,
                             recurrent={"agent_1": RECURRENT_H})
    return path


@pytest.fixture
def memory_bundle(memory_pristine: Path, tmp_path: Path) -> Path:
    return _fresh_copy(memory_pristine, tmp_path, "memory_bundle")


def _memory(index: int, **changes: Any) -> Callable[[dict], None]:
    """Change fields of agents[index].memory (a value of None removes the field)."""
    def edit(data: dict) -> None:
        memory = data["agents"][index]["memory"]
        for key, value in changes.items():
            if value is None:
                memory.pop(key, None)
            else:
                memory[key] = value

    return edit


def _on(agent: str, damage: Damage) -> Damage:
    return lambda bundle: {**(damage(bundle) or {}), "agent": agent}


def _write_state_graph(path: Path, h_out_width: int, state_input: str = "h_in", h_weight: float = 0.5) -> Path:
    """logits = obs @ W; h_out = tanh(h_in @ U) with U [8, h_out_width]: a recurrent graph whose state
    output may have the wrong width, or (``h_weight`` NaN) be NaN from the zero state."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(18, 5)).astype(np.float32)
    u = np.full((RECURRENT_H, h_out_width), h_weight, np.float32)
    bias = np.full(h_out_width, h_weight, np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["observation", "w"], ["logits"]),
         helper.make_node("MatMul", [state_input, "u"], ["hu"]), helper.make_node("Add", ["hu", "c"], ["hc"]),
         helper.make_node("Tanh", ["hc"], ["h_out"])],
        "state_graph",
        [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", 18]),
         helper.make_tensor_value_info(state_input, TensorProto.FLOAT, ["batch", RECURRENT_H])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5]),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, ["batch", h_out_width])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(u, "u"), numpy_helper.from_array(bias, "c")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kdmarl-tests")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def _set_version(version: str) -> Callable[[dict], None]:
    return lambda d: d.__setitem__("schema_version", version)


_RECURRENT_ENTRY = {"kind": "recurrent", "state_dim": 8, "state_bytes": 32, "state_input": "h_in",
                    "state_output": "h_out", "initial_state": "zeros", "reset_on": ["episode_start"]}
_HISTORY_ENTRY = {"kind": "history", "state_dim": 2, "state_bytes": 8, "initial_state": "current_observation",
                  "reset_on": ["episode_start"]}
MEMORY_CORPUS: list[Attack] = [
    Attack("memory_kind_unknown", _on("agent_1", _edit(_memory(1, kind="lstm"))), "manifest.json",
           "agents[1].memory.kind"),
    Attack("memory_kind_missing", _on("agent_1", _edit(_memory(1, kind=None))), "manifest.json",
           "agents[1].memory"),
    Attack("memory_unknown_field", _on("agent_1", _edit(_memory(1, url="http://x"))), "manifest.json",
           "agents[1].memory.url"),
    Attack("memory_state_dim_not_int", _on("agent_1", _edit(_memory(1, state_dim="8"))), "manifest.json",
           "agents[1].memory.state_dim"),
    Attack("memory_state_bytes_wrong", _on("agent_1", _edit(_memory(1, state_bytes=8))), "manifest.json",
           "agents[1].memory.state_bytes", "32"),
    Attack("memory_initial_state_wrong", _on("agent_1", _edit(_memory(1, initial_state="current_observation"))),
           "manifest.json", "agents[1].memory.initial_state"),
    Attack("memory_reset_on_unknown_event", _on("agent_1", _edit(_memory(1, reset_on=["episode_start", "noon"]))),
           "manifest.json", "agents[1].memory.reset_on[1]"),
    Attack("memory_reset_on_without_episode_start", _on("agent_1", _edit(_memory(1, reset_on=["activate"]))),
           "manifest.json", "agents[1].memory.reset_on", "episode_start"),
    Attack("memory_state_input_is_the_observation", _on("agent_1", _edit(_memory(1, state_input="observation"))),
           "manifest.json", "agents[1].memory.state_input"),
    Attack("memory_state_output_is_the_logits", _on("agent_1", _edit(_memory(1, state_output="logits"))),
           "manifest.json", "agents[1].memory.state_output"),
    Attack("memory_in_a_1_0_manifest", _on("agent_1", _edit(_set_version("1.0"))), "manifest.json",
           "agents[1].memory", "1.1"),
    Attack("history_state_dim_wrong", _on("agent_2", _edit(_memory(2, state_dim=3, state_bytes=12))),
           "manifest.json", "agents[2].memory.state_dim", "2"),
    Attack("history_without_memory_entry", _on("agent_2", _edit(lambda d: d["agents"][2].pop("memory"))),
           "manifest.json", "agents[2].memory", "history"),
    Attack("history_memory_without_history_features",
           _edit(lambda d: d["agents"][0].__setitem__("memory", dict(_HISTORY_ENTRY))), "manifest.json",
           "agents[0].memory.kind"),
    Attack("recurrent_memory_with_history_features",
           _on("agent_2", _edit(lambda d: d["agents"][2].__setitem__("memory", dict(_RECURRENT_ENTRY)))),
           "manifest.json", "agents[2].memory.kind", "history"),
    Attack("recurrent_state_dim_disagrees_with_graph",
           _on("agent_1", _edit(_memory(1, state_dim=9, state_bytes=36))), "agent_1.onnx", "graph.input[1].shape",
           "agents[1].memory.state_dim"),
    Attack("recurrent_graph_missing_h_in",
           _on("agent_1", _model_file(lambda p: write_onnx_mlp(p, random_mlp([18, 16, 5], 1)), agent_index=1)),
           "agent_1.onnx", "graph.input", "h_in"),
    Attack("recurrent_memory_on_a_stateless_graph",
           _edit(lambda d: d["agents"][0].__setitem__("memory", dict(_RECURRENT_ENTRY))), "agent_0.onnx",
           "graph.input", "h_in"),
    Attack("stateless_entry_for_a_recurrent_graph", _on("agent_1", _edit(lambda d: d["agents"][1].pop("memory"))),
           "agent_1.onnx", "graph.input", "one input"),
    Attack("recurrent_state_input_renamed", _on("agent_1", _edit(_memory(1, state_input="hidden"))),
           "agent_1.onnx", "graph.input", "hidden"),
    Attack("recurrent_state_output_missing", _on("agent_1", _edit(_memory(1, state_output="h_next"))),
           "agent_1.onnx", "graph.output", "h_next"),
    Attack("recurrent_h_out_of_wrong_width",
           _on("agent_1", _model_file(lambda p: _write_state_graph(p, h_out_width=4), agent_index=1)),
           "agent_1.onnx", "graph.output[1].shape", "8"),
    Attack("recurrent_h_out_not_finite",
           _on("agent_1", _model_file(lambda p: _write_state_graph(p, RECURRENT_H, h_weight=float("nan")),
                                      agent_index=1)),
           "agent_1.onnx", "graph.output", "finite 'h_out'"),
]


def test_corpus_ids_are_unique() -> None:
    ids = [attack.id for attack in CORPUS + MEMORY_CORPUS]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("attack", MEMORY_CORPUS, ids=[attack.id for attack in MEMORY_CORPUS])
def test_hostile_memory_field_is_refused(memory_bundle: Path, attack: Attack) -> None:
    test_hostile_bundle_is_refused(memory_bundle, attack)


def test_memory_pristine_bundle_loads(memory_bundle: Path) -> None:
    kinds = {agent: StudentPolicy(memory_bundle, agent).memory_kind for agent in ("agent_0", "agent_1", "agent_2")}
    assert kinds == {"agent_0": "none", "agent_1": "recurrent", "agent_2": "history"}


@pytest.mark.parametrize("attack", CORPUS, ids=[attack.id for attack in CORPUS])
def test_hostile_bundle_is_refused(bundle: Path, attack: Attack) -> None:
    kwargs = attack.damage(bundle) or {}
    agent = kwargs.pop("agent", "agent_0")
    with pytest.raises(BundleError) as info:
        StudentPolicy(bundle, agent, **kwargs)
    error = info.value
    assert error.path.endswith(attack.suffix), error
    assert error.field == attack.field, error
    assert attack.says in str(error), error
    if attack.suffix == "manifest.sig":
        assert isinstance(error, SignatureError)


def test_pristine_bundle_loads(bundle: Path) -> None:
    assert StudentPolicy(bundle, "agent_0").act(np.zeros(18)) in range(5)


def test_bundle_signed_by_the_trusted_key_loads(bundle: Path) -> None:
    kwargs = _signed()(bundle)
    assert StudentPolicy(bundle, "agent_0", **kwargs).manifest.signed_by


# ------------------------------------------------------------------------------------- special cases
def test_model_swapped_during_load_never_runs(bundle: Path, tmp_path: Path) -> None:
    """Issue 9: with agent_0.onnx swapped back and forth between the genuine model and another valid one,
    every load either refuses (BundleError) or runs the genuine model: the bytes hashed are the bytes run."""
    genuine = tmp_path / "genuine.onnx"
    shutil.copy(bundle / "agent_0.onnx", genuine)
    other = write_onnx_mlp(tmp_path / "other.onnx", random_mlp([18, 16, 5], seed=99))
    observations = np.random.default_rng(0).normal(size=(32, 18)).astype(np.float32)
    expected = StudentPolicy(bundle, "agent_0").logits(observations)
    stop = threading.Event()

    def swap() -> None:
        target, staging = bundle / "agent_0.onnx", tmp_path / "staging.onnx"
        while not stop.is_set():
            for source in (genuine, other):
                os.link(source, staging)  # a hard link and a rename: each swap is atomic and fast
                os.replace(staging, target)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    loaded = refused = 0
    try:
        for _ in range(200):
            try:
                policy = StudentPolicy(bundle, "agent_0")
            except BundleError as error:
                assert error.path.endswith("agent_0.onnx"), error
                refused += 1
                continue
            np.testing.assert_array_equal(policy.logits(observations), expected)
            loaded += 1
    finally:
        stop.set()
        swapper.join(10)
    assert loaded > 0 and refused > 0, (loaded, refused)  # both states were really seen


PROBE = """
import json, os, resource, sys
import jsonschema, cryptography.hazmat.primitives.asymmetric.ed25519  # imported before the memory limit
from kdmarl_student.errors import BundleError
from kdmarl_student.manifest import load_manifest
bundle, public_key, headroom = sys.argv[1], sys.argv[2] or None, int(sys.argv[3])
with open("/proc/self/statm") as statm:
    size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (size + headroom, resource.getrlimit(resource.RLIMIT_AS)[1]))
try:
    manifest = load_manifest(bundle, public_key=public_key)
    manifest.read_model(manifest.agent("agent_0"))
    print(json.dumps({"loaded": True}))
except BundleError as error:
    print(json.dumps({"path": error.path, "field": error.field, "message": str(error)}))
"""


def _fifo(name: str) -> Callable[[Path], None]:
    def damage(bundle: Path) -> None:
        (bundle / name).unlink(missing_ok=True)
        os.mkfifo(bundle / name)

    return damage


def _dev_zero(name: str) -> Callable[[Path], None]:
    def damage(bundle: Path) -> None:
        (bundle / name).unlink(missing_ok=True)
        os.symlink("/dev/zero", bundle / name)

    return damage


def _huge_parse(bundle: Path) -> None:
    """Just under 1 MiB of ``{}``: about 350 000 objects, more than the memory the probe leaves."""
    head, tail = b'{"schema_version": "1.0", "pad": [', b"{}]}"
    count = (MAX_MANIFEST_BYTES - len(head) - len(tail)) // 3
    (bundle / "manifest.json").write_bytes(head + b"{}," * count + tail)


class Blocker(NamedTuple):
    damage: Callable[[Path], None]
    signed: bool  # the node has a public key (so manifest.sig is read)
    suffix: str
    says: str
    headroom_mib: int = 512  # address space left to the probe after its imports


BLOCKERS = {
    "manifest_fifo": Blocker(_fifo("manifest.json"), False, "manifest.json", "FIFO"),
    "signature_fifo": Blocker(_fifo("manifest.sig"), True, "manifest.sig", "FIFO"),
    "model_fifo": Blocker(_fifo("agent_0.onnx"), False, "agent_0.onnx", "FIFO"),
    "manifest_dev_zero": Blocker(_dev_zero("manifest.json"), False, "manifest.json", "symlink"),
    "signature_dev_zero": Blocker(_dev_zero("manifest.sig"), True, "manifest.sig", "symlink"),
    "manifest_exhausting_memory": Blocker(_huge_parse, False, "manifest.json", "memory", headroom_mib=8),
}


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="POSIX only")
@pytest.mark.parametrize("case", BLOCKERS.values(), ids=BLOCKERS.keys())
def test_files_that_block_or_exhaust_the_loader(bundle: Path, case: Blocker) -> None:
    """Issue 9: a FIFO hung the node, /dev/zero grew it by gigabytes, a large parse raised MemoryError.

    Run in a subprocess with a timeout and a memory limit, so the old behaviour fails the test instead of
    hanging or exhausting the machine.
    """
    public_key = str(_signed()(bundle)["public_key"]) if case.signed else ""
    case.damage(bundle)
    src = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", PROBE, str(bundle), public_key, str(case.headroom_mib << 20)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading a bundle with a damaged {case.suffix} hung for 60 s")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.get("path", "").endswith(case.suffix), report
    assert report["field"] == "" and case.says in report["message"], report


def test_manifest_read_model_refuses_the_bomb_for_kdmarl_sign(bundle: Path) -> None:
    """``kdmarl sign`` signs and ``--verify`` verifies with ``Manifest.read_model``
    (kdmarl_teacher.export.sign.check_models): the operator allowlist lives there, so a bundle the robot refuses
    can neither be signed nor verified."""
    from kdmarl_student.manifest import load_manifest

    _model_file(lambda p: write_onnx_compute_bomb(p, 18, 5))(bundle)
    manifest = load_manifest(bundle)
    with pytest.raises(BundleError, match="'Loop'") as info:
        manifest.read_model(manifest.agent("agent_0"))
    assert info.value.field == "graph.node[4]"


def test_smax_units_must_match_the_map(tmp_path: Path) -> None:
    """SMAX: one agent per allied unit of the map, each with its unit type as the role."""
    from kdmarl_student.manifest import load_manifest

    bundle, _, _ = make_bundle(tmp_path / "smax", scenario="smax:2s3z")
    assert [a.role for a in load_manifest(bundle).agents] == ["stalker"] * 2 + ["zealot"] * 3
    edit_manifest(bundle, lambda d: d["agents"][0].__setitem__("role", "zealot"))
    with pytest.raises(BundleError, match="'stalker'") as info:
        load_manifest(bundle)
    assert info.value.field == "agents[0].role"
    edit_manifest(bundle, lambda d: d["scenario"].__setitem__("name", "smax:3s5z"))
    with pytest.raises(BundleError, match="8 agents") as info:
        load_manifest(bundle)
    assert info.value.field == "agents"


def test_output_width_that_changes_with_the_data_is_a_model_fault(bundle: Path) -> None:
    """A graph that declares a fixed width [batch, 5] (so it loads) but slices its logits to 3 when obs[0, 0] < 0:
    the decision is refused as a model fault (PolicyOutputError "output_shape"), never acted on over 3 logits and
    never mistaken for a bad observation (issue 22: a raw ValueError counted as an invalid observation)."""
    from kdmarl_student.errors import PolicyOutputError

    def lying(path: Path) -> None:
        _data_dependent_width(path)
        model = onnx.load(str(path))
        model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 5  # declared fixed: the lie
        onnx.save(model, str(path))

    _model_file(lying)(bundle)
    policy = StudentPolicy(bundle, "agent_0")
    assert policy.act(np.ones(18, np.float32)) in range(5)
    negative = np.ones(18, np.float32)
    negative[0] = -1.0
    with pytest.raises(PolicyOutputError) as info:
        policy.act(negative)
    assert info.value.reason == "output_shape" and "[1, 3]" in str(info.value), info.value
    assert policy.rejected_observations == 0
