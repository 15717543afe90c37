"""Hostile bundles (issue 5 §4): every case is refused with a BundleError that names the file and the field."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from kdmarl_student.errors import BundleError, SignatureError
from kdmarl_student.manifest import load_manifest
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.signing import generate_keypair, load_private_key, sign_bundle
from test_support_bundles import make_bundle, random_mlp, sha256, write_onnx_mlp


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _, _ = make_bundle(tmp_path_factory.mktemp("hostile") / "pristine")
    return path


@pytest.fixture
def bundle(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(pristine, copy)
    return copy


def _edit_manifest(bundle: Path, edit: Callable[[dict], None]) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _refused(bundle: Path, agent: str = "agent_0", **kwargs: object) -> BundleError:
    with pytest.raises(BundleError) as info:
        StudentPolicy(bundle, agent, **kwargs)
    return info.value


def test_pristine_bundle_loads(bundle: Path) -> None:
    assert StudentPolicy(bundle, "agent_0").act(np.zeros(18)) in range(5)


def test_missing_manifest(bundle: Path) -> None:
    (bundle / "manifest.json").unlink()
    error = _refused(bundle)
    assert error.path.endswith("manifest.json") and "missing" in str(error)


def test_missing_bundle_directory(tmp_path: Path) -> None:
    error = _refused(tmp_path / "nope")
    assert error.path.endswith("nope")


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b"[1, 2]"])
def test_manifest_not_json_or_not_an_object(bundle: Path, content: bytes) -> None:
    (bundle / "manifest.json").write_bytes(content)
    error = _refused(bundle)
    assert error.path.endswith("manifest.json")
    assert "JSON" in str(error)


@pytest.mark.parametrize("version", ["9.9", None, 1, "0.1"])
def test_unknown_schema_version(bundle: Path, version: object) -> None:
    _edit_manifest(bundle, lambda d: d.__setitem__("schema_version", version))
    error = _refused(bundle)
    assert error.path.endswith("manifest.json") and error.field == "schema_version"


def test_schema_violation_names_the_field(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["agents"][1]["action"].__setitem__("n_actions", "five"))
    error = _refused(bundle)
    assert error.field == "agents[1].action.n_actions"


def test_missing_model_file(bundle: Path) -> None:
    (bundle / "agent_0.onnx").unlink()
    error = _refused(bundle)
    assert error.path.endswith("agent_0.onnx") and "missing" in str(error)


def test_sha256_mismatch(bundle: Path) -> None:
    path = bundle / "agent_0.onnx"
    write_onnx_mlp(path, random_mlp([18, 16, 5], seed=99))  # a valid model, but not the one the manifest lists
    error = _refused(bundle)
    assert error.path.endswith("agent_0.onnx") and error.field == "agents[0].model.sha256"


@pytest.mark.parametrize("name", ["../agent_0.onnx", "/etc/agent_0.onnx", "sub/agent_0.onnx", "..\\agent_0.onnx"])
def test_model_path_escaping_the_bundle(bundle: Path, name: str) -> None:
    _edit_manifest(bundle, lambda d: d["agents"][0]["model"].__setitem__("file", name))
    error = _refused(bundle)
    assert error.path.endswith("manifest.json") and error.field == "agents[0].model.file"


def test_model_path_escaping_after_schema_check(bundle: Path, tmp_path: Path) -> None:
    """Even a name the schema accepts is refused when it resolves outside the bundle (symlink)."""
    outside = tmp_path / "outside.onnx"
    shutil.copy(bundle / "agent_0.onnx", outside)
    (bundle / "agent_0.onnx").unlink()
    os.symlink(outside, bundle / "agent_0.onnx")
    error = _refused(bundle)
    assert error.field == "agents[0].model.file" and "resolves" in str(error)


def test_onnx_input_width_disagrees_with_layout(bundle: Path) -> None:
    path = write_onnx_mlp(bundle / "agent_0.onnx", random_mlp([12, 16, 5], seed=1))
    _edit_manifest(bundle, lambda d: d["agents"][0]["model"].__setitem__("sha256", sha256(path)))
    error = _refused(bundle)
    assert error.path.endswith("agent_0.onnx") and error.field == "graph.input[0].shape"
    assert "18" in str(error)


def test_onnx_output_width_disagrees_with_actions(bundle: Path) -> None:
    path = write_onnx_mlp(bundle / "agent_0.onnx", random_mlp([18, 16, 4], seed=1))
    _edit_manifest(bundle, lambda d: d["agents"][0]["model"].__setitem__("sha256", sha256(path)))
    error = _refused(bundle)
    assert error.path.endswith("agent_0.onnx") and error.field.startswith("graph.output")


def test_onnx_input_name_disagrees(bundle: Path) -> None:
    path = write_onnx_mlp(bundle / "agent_0.onnx", random_mlp([18, 16, 5], seed=1), input_name="x")
    _edit_manifest(bundle, lambda d: d["agents"][0]["model"].__setitem__("sha256", sha256(path)))
    error = _refused(bundle)
    assert error.field == "graph.input"


@pytest.mark.parametrize("content", [b"this is not an onnx model", b"", b"\x08\x07" * 100])
def test_onnx_that_is_not_a_model(bundle: Path, content: bytes) -> None:
    path = bundle / "agent_0.onnx"
    path.write_bytes(content)
    _edit_manifest(bundle, lambda d: d["agents"][0]["model"].__setitem__("sha256", sha256(path)))
    error = _refused(bundle)
    assert error.path.endswith("agent_0.onnx") and "ONNX" in str(error)


def test_agent_not_in_bundle(bundle: Path) -> None:
    error = _refused(bundle, agent="agent_7")
    assert error.path.endswith("manifest.json") and error.field == "agents[].name" and "agent_0" in str(error)


def test_layout_slice_outside_observation(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["agents"][0]["observation"]["layout"].__setitem__("comm", [14, 40]))
    error = _refused(bundle)
    assert error.field == "agents[0].observation.layout.comm"


def test_input_dim_disagrees_with_sensing(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["agents"][2]["observation"].__setitem__("input_dim", 12))
    error = _refused(bundle, agent="agent_2")
    assert error.field == "agents[2].observation.input_dim"


def test_sensing_names_unknown_slice(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["agents"][0]["observation"]["sensing"].__setitem__("slices", ["lidar"]))
    error = _refused(bundle)
    assert error.field == "agents[0].observation.sensing"


def test_duplicate_agent_names(bundle: Path) -> None:
    _edit_manifest(bundle, lambda d: d["agents"][1].__setitem__("name", "agent_0"))
    assert _refused(bundle).field == "agents[].name"


def test_signature_required_but_missing_or_bad(bundle: Path, tmp_path: Path) -> None:
    generate_keypair(tmp_path / "k.key", tmp_path / "k.pub")
    generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    error = _refused(bundle, public_key=tmp_path / "k.pub")
    assert isinstance(error, SignatureError) and error.path.endswith("manifest.sig")
    sign_bundle(bundle, load_private_key(tmp_path / "other.key"))  # signed, by a key this node does not trust
    error = _refused(bundle, public_key=tmp_path / "k.pub")
    assert isinstance(error, SignatureError) and error.field == "signature"
    sign_bundle(bundle, load_private_key(tmp_path / "k.key"))
    assert StudentPolicy(bundle, "agent_0", public_key=tmp_path / "k.pub").manifest.signed_by
    _edit_manifest(bundle, lambda d: d.__setitem__("created", "tampered"))  # any byte changed after signing
    error = _refused(bundle, public_key=tmp_path / "k.pub")
    assert isinstance(error, SignatureError) and error.field == "signature"


def test_require_signature_without_key_is_a_configuration_error(bundle: Path) -> None:
    with pytest.raises(BundleError, match="public key"):
        load_manifest(bundle, require_signature=True)
