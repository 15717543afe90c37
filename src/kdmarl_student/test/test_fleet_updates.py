"""Fleet updates over TUF (issue 23): publishing, thresholds, rotation, lead mirror, and the hostile-repository corpus.

Everything is real: TUF metadata written with ``tuf.api.metadata`` and signed with ed25519 keys, served over HTTP on
127.0.0.1, read by ``tuf.ngclient``; bundles are real ONNX models with real bundle signatures, loaded by ONNX Runtime.
In every hostile case the robot runs release 1, is offered release 2 through an attacked repository, must refuse it
(or freeze), and its releases directory must be exactly as before (no staging leftovers, same pointers).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from kdmarl_student.fleet_repo import (
    FleetRepository,
    KeyStore,
    PublishError,
    hashed_target_path,
    init_repository,
    publish_bundle,
    refresh,
    rotate_keys,
)
from kdmarl_student.fleet_serve import StaticHandler, serving
from kdmarl_student.fleet_update import FleetUpdater
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.release_store import ReleaseStore
from kdmarl_student.signing import generate_keypair, load_private_key, sign_bundle
from securesystemslib.signer import CryptoSigner
from test_support_bundles import make_bundle
from tuf.api.metadata import Metadata, Targets, Timestamp

TEAM = "simple_spread"
AGENT = "agent_0"
BUDGET = {"max_flops": 4000}  # release bundles with 16-wide students fit; the 64x64 one does not
MAX_CHECK_S = 3.0  # a whole update check of these small releases takes well under a second


# ----------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Signed bundles: r1, r2 (other weights), big (over BUDGET), foreign (signed by another key), and keys."""
    root = tmp_path_factory.mktemp("bundles")
    generate_keypair(root / "bundle.key", root / "bundle.pub")
    generate_keypair(root / "other.key", root / "other.pub")
    out = {"pub": root / "bundle.pub"}
    for name, kwargs, key in (("r1", {"seed": 1}, "bundle"), ("r2", {"seed": 2}, "bundle"),
                              ("big", {"seed": 3, "hidden": (64, 64)}, "bundle"), ("foreign", {"seed": 4}, "other")):
        bundle, _, _ = make_bundle(root / name, **kwargs)
        (bundle / "teacher_actor.onnx").unlink()  # robots never need it; publishing ships agents only
        sign_bundle(bundle, load_private_key(root / f"{key}.key"))
        out[name] = bundle
    return out


@dataclass
class Fleet:
    """A workstation repository with release 1, a robot running it, and the paths of both."""

    tmp: Path
    repo: Path
    keys: Path
    pub: Path
    bundles: dict[str, Path]
    lead: FleetUpdater | None = None  # the lead robot of the lead cases (set by the test)
    sync: Callable[[], None] | None = None  # lets the robot (and lead) see the repository as it is now

    def robot(self, url: str, name: str = "robot", agent: str = AGENT, mirror: bool = False) -> FleetUpdater:
        return FleetUpdater(self.tmp / name, url, TEAM, agent, trusted_root=self.repo / "metadata" / "1.root.json",
                            bundle_public_key=self.pub, device_budget=BUDGET, mirror=mirror,
                            max_check_seconds=MAX_CHECK_S)

    def publish(self, name: str = "r2", **kwargs: object) -> None:
        publish_bundle(self.repo, self.keys, self.bundles[name], public_key=kwargs.pop("public_key", self.pub),
                       **kwargs)

    def store(self) -> FleetRepository:
        return FleetRepository(self.repo, KeyStore(self.keys))


@pytest.fixture
def fleet(tmp_path: Path, bundles: dict[str, Path]) -> Fleet:
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    init_repository(repo, keys, targets_keys=3, targets_threshold=2)
    publish_bundle(repo, keys, bundles["r1"], public_key=bundles["pub"])
    return Fleet(tmp_path, repo, keys, bundles["pub"], bundles)


def run_release_1(robot: FleetUpdater) -> None:
    """The robot stages release 1 and switches to it (what the node does at the cut-over)."""
    assert robot.check().status == "staged"
    assert robot.store.promote() == 1


def assert_still_on_release_1(robot: FleetUpdater, before: dict) -> None:
    assert robot.store.listing() == before, "the releases directory changed"
    assert not [p for p in robot.store.root.iterdir() if p.name.startswith(".")], "staging leftovers"
    policy = StudentPolicy(robot.store.path("current"), AGENT, public_key=robot.bundle_public_key,
                           providers=["CPUExecutionProvider"])
    assert policy.act(np.zeros(18, np.float32)) in range(5)  # the running release still acts


# ------------------------------------------------------------------------------------------ helpers
def resign(fleet: Fleet, role: str, edit: Callable[[Metadata], None], signers: list | None = None,
           root_dir: Path | None = None) -> None:
    """Rewrite the newest ``role`` metadata of a repository (or mirror) with ``edit`` and sign it again, with the
    repository's own keys unless ``signers`` is given (what an attacker holding those keys could serve)."""
    repo = FleetRepository(root_dir or fleet.repo, KeyStore(fleet.keys))
    md = repo.open(role)
    edit(md)
    repo.sign_with(role, md, signers if signers is not None else repo.keystore.signers(repo.root(), role))
    repo.write(role, md)


def republish(fleet: Fleet, edit: Callable[[FleetRepository, Targets], None]) -> None:
    """A new targets version made with all the right keys (an insider or a bug), then snapshot and timestamp."""
    repo = fleet.store()
    with repo.edit_targets() as targets:
        edit(repo, targets)
    repo.do_snapshot()
    repo.do_timestamp()


def rewrite_index(repo: FleetRepository, targets: Targets, edit: Callable[[dict], None]) -> None:
    path = f"{TEAM}/release.json"
    info = targets.targets[path]
    stored = hashed_target_path(repo.targets_dir, path, info.hashes["sha256"])
    index = json.loads(stored.read_bytes())
    edit(index)
    targets.targets[path] = repo.write_target(path, json.dumps(index).encode(), info.custom["kdmarl"])


def stored(repo_dir: Path, path: str) -> Path:
    """The stored file of target ``path`` in a repository (or mirror) directory, from its newest targets."""
    md = FleetRepository(repo_dir, KeyStore(repo_dir.parent / "unused-keys")).open("targets")
    return hashed_target_path(repo_dir / "targets", path, md.signed.targets[path].hashes["sha256"])


class HostileTargetHandler(StaticHandler):
    """Serves release 2's ``agent_0.onnx`` from :meth:`chunks` (with ``Content-Length`` when :meth:`length` gives
    one), every other file as it is: the hostile servers of the corpus."""

    def length(self) -> int | None:
        return None

    def chunks(self) -> Iterator[bytes]:
        raise NotImplementedError

    def do_GET(self) -> None:  # noqa: N802  (http.server names it)
        if not (self.path.startswith(f"/targets/{TEAM}/2/") and self.path.endswith(".agent_0.onnx")):
            super().do_GET()
            return
        self.send_response(200)
        if self.length() is not None:
            self.send_header("Content-Length", str(self.length()))
        self.end_headers()
        try:
            for chunk in self.chunks():
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


class EndlessHandler(HostileTargetHandler):
    """An endless stream of zeros, no Content-Length (1 GiB at most: bounded even if the client never stops)."""

    def chunks(self) -> Iterator[bytes]:
        for _ in range(1 << 16):
            yield b"\0" * 16384


class TrickleHandler(HostileTargetHandler):
    """The true bytes, 16 every 0.1 s: never a gap long enough for a socket timeout (slow retrieval)."""

    def _data(self) -> bytes:
        return Path(self.translate_path(self.path)).read_bytes()

    def length(self) -> int | None:
        return len(self._data())

    def chunks(self) -> Iterator[bytes]:
        data = self._data()
        for start in range(0, len(data), 16):
            yield data[start:start + 16]
            time.sleep(0.1)


# -------------------------------------------------------------------------------------- attacks
# Each attack gets the fleet after the robot runs release 1, publishes/attacks, and returns
# (directory to serve, handler); the robot must refuse ("refused") or freeze ("frozen") with `expect` in the reason.
def _replayed_timestamp(fleet: Fleet) -> None:
    old = (fleet.repo / "metadata" / "timestamp.json").read_bytes()
    refresh(fleet.repo, fleet.keys)
    fleet.sync()
    fleet.publish()
    (fleet.repo / "metadata" / "timestamp.json").write_bytes(old)


def _replayed_snapshot(fleet: Fleet) -> None:
    fleet.publish()

    def point_at_old_snapshot(md: Metadata) -> None:
        md.signed.snapshot_meta.version = 1  # the robot trusts snapshot 2 already
        md.signed.version += 1
    resign(fleet, Timestamp.type, point_at_old_snapshot)


def _expired_timestamp(fleet: Fleet) -> None:
    fleet.publish()

    def expire(md: Metadata) -> None:
        md.signed.expires = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
        md.signed.version += 1
    resign(fleet, Timestamp.type, expire)


def _tampered_target(fleet: Fleet) -> None:
    fleet.publish()
    path = stored(fleet.repo, f"{TEAM}/2/agent_0.onnx")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _substituted_target(fleet: Fleet) -> None:
    fleet.publish()
    old = (fleet.bundles["r1"] / "agent_0.onnx").read_bytes()  # release 1's model for this robot
    path = stored(fleet.repo, f"{TEAM}/2/agent_0.onnx")
    assert len(old) == path.stat().st_size  # same length: only the hash can tell
    path.write_bytes(old)


def _below_threshold(fleet: Fleet) -> None:
    fleet.publish()

    def keep_one_signature(md: Metadata) -> None:
        pass
    repo = fleet.store()
    one = repo.keystore.signers(repo.root(), Targets.type)[:1]
    resign(fleet, Targets.type, keep_one_signature, signers=one)


def _revoked_targets_keys(fleet: Fleet) -> None:
    repo = fleet.store()
    old = repo.keystore.signers(repo.root(), Targets.type)
    rotate_keys(fleet.repo, fleet.keys, "targets")
    fleet.sync()
    fleet.publish()
    resign(fleet, Targets.type, lambda md: None, signers=old)  # release 2 signed by the revoked targets keys


def _publish_release_2(fleet: Fleet) -> None:
    fleet.publish()


def _missing_agent(fleet: Fleet) -> None:
    fleet.publish()

    def drop_agent_2(repo: FleetRepository, targets: Targets) -> None:
        del targets.targets[f"{TEAM}/2/agent_2.onnx"]
        rewrite_index(repo, targets, lambda index: index["files"].pop(f"{TEAM}/2/agent_2.onnx"))
    republish(fleet, drop_agent_2)


def _mixed_releases(fleet: Fleet) -> None:
    old_targets = fleet.store().targets()  # release 1 entries
    old_path = f"{TEAM}/1/agent_1.onnx"
    old_info = old_targets.targets[old_path]
    fleet.publish()

    def mix(repo: FleetRepository, targets: Targets) -> None:
        del targets.targets[f"{TEAM}/2/agent_1.onnx"]
        targets.targets[old_path] = old_info

        def swap(index: dict) -> None:
            index["files"][old_path] = index["files"].pop(f"{TEAM}/2/agent_1.onnx")
        rewrite_index(repo, targets, swap)
    republish(fleet, mix)


def _malformed_index(fleet: Fleet) -> None:
    fleet.publish()

    def strings_for_objects(repo: FleetRepository, targets: Targets) -> None:
        rewrite_index(repo, targets, lambda index: index.update(files={p: "model" for p in index["files"]}))
    republish(fleet, strings_for_objects)


def _foreign_bundle_signature(fleet: Fleet) -> None:
    fleet.publish("foreign", public_key=None)  # the publisher did not check: the robot does


def _over_budget(fleet: Fleet) -> None:
    fleet.publish("big")


def _lead_forged_release(fleet: Fleet) -> None:
    """The lead rewrites the targets it mirrors: a forged agent_0 model, targets re-signed with the lead's key."""
    fleet.publish()
    assert fleet.lead.check().status == "staged"
    mirror = fleet.lead.mirror_dir
    forged = (fleet.bundles["big"] / "agent_0.onnx").read_bytes()
    lead_key = CryptoSigner.generate_ed25519()
    repo = FleetRepository(mirror, KeyStore(fleet.tmp / "lead-keys"))
    md = repo.open(Targets.type)
    path = f"{TEAM}/2/agent_0.onnx"
    md.signed.targets[path] = repo.write_target(path, forged, md.signed.targets[path].custom["kdmarl"])
    repo.sign_with(Targets.type, md, [lead_key])
    repo.write(Targets.type, md)


def _lead_altered_target(fleet: Fleet) -> None:
    """The lead serves other bytes under the signed name of release 2's manifest."""
    fleet.publish()
    assert fleet.lead.check().status == "staged"
    path = stored(fleet.lead.mirror_dir, f"{TEAM}/2/manifest.json")
    path.write_bytes(path.read_bytes().replace(b'"agent_0"', b'"agent_9"'))


@dataclass(frozen=True)
class Attack:
    name: str
    setup: Callable[[Fleet], None]
    expect: str
    status: str = "refused"
    via_lead: bool = False
    handler: type = StaticHandler


ATTACKS = [
    Attack("replayed_timestamp", _replayed_timestamp, "BadVersionNumberError"),
    Attack("replayed_snapshot", _replayed_snapshot, "BadVersionNumberError"),
    Attack("expired_timestamp", _expired_timestamp, "expired", status="frozen"),
    Attack("tampered_target", _tampered_target, "LengthOrHashMismatchError"),
    Attack("substituted_target", _substituted_target, "LengthOrHashMismatchError"),
    Attack("targets_below_threshold", _below_threshold, "UnsignedMetadataError"),
    Attack("revoked_targets_keys", _revoked_targets_keys, "UnsignedMetadataError"),
    Attack("endless_target", _publish_release_2, "DownloadLengthMismatchError", handler=EndlessHandler),
    Attack("slow_retrieval", _publish_release_2, "took longer than", handler=TrickleHandler),
    Attack("release_missing_an_agent", _missing_agent, "missing ['agent_2.onnx']"),
    Attack("release_mixing_two_releases", _mixed_releases, "mixing two releases"),
    Attack("malformed_release_index", _malformed_index, "field 'files', an object mapping"),
    Attack("bundle_signature_fails", _foreign_bundle_signature, "verification failed"),
    Attack("release_over_budget", _over_budget, "over this robot's budget"),
    Attack("lead_forged_release", _lead_forged_release, "UnsignedMetadataError", via_lead=True),
    Attack("lead_altered_target", _lead_altered_target, "LengthOrHashMismatchError", via_lead=True),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_hostile_repository_is_refused_and_release_1_keeps_running(
        fleet: Fleet, attack: Attack, caplog: pytest.LogCaptureFixture) -> None:
    with serving(fleet.repo, handler=attack.handler if not attack.via_lead else StaticHandler) as url:
        fleet.lead = fleet.robot(url, "lead", mirror=True)
        if attack.via_lead:
            run_release_1(fleet.lead)
        with serving(fleet.lead.mirror_dir if attack.via_lead else fleet.repo, handler=attack.handler) as robot_url:
            robot = fleet.robot(robot_url)

            def sync() -> None:  # let the robot see the repository as it is now (no new release)
                if attack.via_lead:
                    assert fleet.lead.check().status == "up_to_date"
                assert robot.check().status == "up_to_date"
            fleet.sync = sync
            run_release_1(robot)
            before = robot.store.listing()
            assert before == {"pointers": {"current": 1, "previous": None, "staged": None}, "entries": ["1"]}
            attack.setup(fleet)
            with caplog.at_level(logging.WARNING, logger="kdmarl_student.fleet_update"):
                result = robot.check()
    assert result.status == attack.status, result
    assert attack.expect in result.reason, result.reason
    assert_still_on_release_1(robot, before)
    refusal = robot.store.status()["last_refusal"]
    assert refusal["status"] == attack.status and attack.expect in refusal["reason"]
    if attack.status == "frozen":
        assert any(r.levelno == logging.WARNING and "keeping the current release" in r.getMessage()
                   for r in caplog.records)


# ------------------------------------------------------------------------------------ positive paths
def test_release_2_is_staged_then_promoted_and_reverted(fleet: Fleet) -> None:
    with serving(fleet.repo) as url:
        robot = fleet.robot(url)
        run_release_1(robot)
        fleet.publish()
        result = robot.check()
        assert (result.status, result.release, result.supersedes) == ("staged", 2, 1)
        assert robot.store.listing()["pointers"] == {"current": 1, "previous": None, "staged": 2}
        assert robot.check().status == "up_to_date"
        assert robot.store.promote() == 2
        assert robot.store.listing() == {"pointers": {"current": 2, "previous": 1, "staged": None},
                                         "entries": ["1", "2"]}
        assert (robot.store.path("current") / "agent_0.onnx").read_bytes() == \
            (fleet.bundles["r2"] / "agent_0.onnx").read_bytes()
        assert robot.store.revert("non-finite logits") == 1
        assert robot.store.pointer("current") == 1
        assert robot.check().status == "up_to_date"  # a reverted release is not staged again
        assert robot.store.pointer("staged") is None
        assert "reverted" in robot.store.status()["last_refusal"]["reason"]


def test_lead_mirror_is_byte_exact_and_followers_update_from_it(fleet: Fleet) -> None:
    with serving(fleet.repo) as url:
        lead = fleet.robot(url, "lead", mirror=True)
        assert lead.check().status == "staged"
        rotate_keys(fleet.repo, fleet.keys, "root")  # followers installed with 1.root.json walk the chain via the lead
        fleet.publish()
        assert lead.check().status == "staged"
        with serving(lead.mirror_dir) as lead_url:
            followers = [fleet.robot(lead_url, f"f{i}", agent=f"agent_{i}") for i in (1, 2)]
            results = [f.check() for f in followers]
    assert [(r.status, r.release) for r in results] == [("staged", 2), ("staged", 2)]
    for name in ("1.root.json", "2.root.json", "3.targets.json", "3.snapshot.json", "timestamp.json"):
        assert (lead.mirror_dir / "metadata" / name).read_bytes() == (fleet.repo / "metadata" / name).read_bytes()
    release_2 = sorted(p.relative_to(fleet.repo) for p in (fleet.repo / "targets" / TEAM / "2").iterdir())
    assert len(release_2) == 5
    for relative in release_2:
        assert (lead.mirror_dir / relative).read_bytes() == (fleet.repo / relative).read_bytes()
    assert [json.loads((f.metadata_dir / "root.json").read_bytes())["signed"]["version"] for f in followers] == [2, 2]


def test_a_follower_downloads_only_its_own_model_a_lead_the_whole_team(fleet: Fleet) -> None:
    with serving(fleet.repo) as url:
        lead, follower = fleet.robot(url, "lead", mirror=True), fleet.robot(url, "follower", agent="agent_1")
        results = [lead.check(), follower.check()]
    assert [r.status for r in results] == ["staged", "staged"]
    files = {r: sorted(p.name for p in r.store.path("staged").iterdir()) for r in (lead, follower)}
    assert files[follower] == ["agent_1.onnx", "manifest.json", "manifest.sig", "release.json"]
    assert files[lead] == ["agent_0.onnx", "agent_1.onnx", "agent_2.onnx", "manifest.json", "manifest.sig",
                           "release.json"]
    models = sum((fleet.bundles["r1"] / f"agent_{i}.onnx").stat().st_size for i in (0, 2))
    assert results[0].bytes_received - results[1].bytes_received == models
    policy = StudentPolicy(follower.store.path("staged"), "agent_1", public_key=fleet.pub,
                           providers=["CPUExecutionProvider"])
    assert policy.act(np.zeros(18, np.float32)) in range(5)


def test_targets_threshold_needs_two_of_three_keys_possibly_in_two_keystores(fleet: Fleet) -> None:
    repo = fleet.store()
    targets_keys = repo.root().roles["targets"].keyids
    assert len(targets_keys) == 3 and repo.root().roles["targets"].threshold == 2
    holder_a, holder_b = fleet.tmp / "holder_a", fleet.tmp / "holder_b"
    for directory in (holder_a, holder_b):
        directory.mkdir(mode=0o700)
    for path in fleet.keys.glob("targets-*.key"):  # the other keys (root, snapshot, timestamp) stay in keys/
        keyid = path.stem.removeprefix("targets-")
        shutil.move(str(path), str([holder_a, holder_b, holder_b][targets_keys.index(keyid)] / path.name))
    with pytest.raises(PublishError, match="targets needs 2 signature"):
        publish_bundle(fleet.repo, [fleet.keys, holder_a], fleet.bundles["r2"], public_key=fleet.pub)
    assert FleetRepository(fleet.repo, KeyStore(fleet.keys)).current_release(TEAM) == 1  # nothing published
    release = publish_bundle(fleet.repo, [fleet.keys, holder_a, holder_b], fleet.bundles["r2"], public_key=fleet.pub)
    assert release.release == 2 and release.supersedes == 1
    signed = Metadata.from_file(str(fleet.repo / "metadata" / f"{release.targets_version}.targets.json"))
    assert len(signed.signatures) == 3
    with serving(fleet.repo) as url:
        assert fleet.robot(url).check().release == 2


def test_root_rotation_old_root_signs_new_and_robots_follow_the_chain(fleet: Fleet) -> None:
    old_root = fleet.store().root()
    assert rotate_keys(fleet.repo, fleet.keys, "root") == 2
    new = Metadata.from_file(str(fleet.repo / "metadata" / "2.root.json"))
    old_keys, new_keys = set(old_root.roles["root"].keyids), set(new.signed.roles["root"].keyids)
    assert old_keys.isdisjoint(new_keys)
    assert old_keys | new_keys == set(new.signatures)  # signed by the old root key and the new one
    fleet.publish()
    with serving(fleet.repo) as url:
        robot = fleet.robot(url)  # installed with 1.root.json only
        assert robot.check().release == 2
    assert json.loads((robot.metadata_dir / "root.json").read_bytes())["signed"]["version"] == 2


def test_one_snapshot_version_per_release_and_the_release_names_team_and_predecessor(fleet: Fleet) -> None:
    repo = fleet.store()
    before = repo.snapshot().version
    fleet.publish()
    assert repo.snapshot().version == before + 1 and repo.timestamp().snapshot_meta.version == before + 1
    targets = repo.targets().targets
    assert sorted(targets) == sorted([f"{TEAM}/release.json", f"{TEAM}/2/manifest.json", f"{TEAM}/2/manifest.sig",
                                      *(f"{TEAM}/2/agent_{i}.onnx" for i in range(3))])
    custom = targets[f"{TEAM}/2/agent_1.onnx"].custom["kdmarl"]
    assert custom == {"team": TEAM, "release": 2, "supersedes": 1, "kind": "model", "agent": "agent_1"}
    with pytest.raises(PublishError, match="not newer"):
        publish_bundle(fleet.repo, fleet.keys, fleet.bundles["r1"], public_key=fleet.pub, release=2)


def test_refresh_re_signs_roles_near_expiry_with_the_keys_at_hand(fleet: Fleet, tmp_path: Path) -> None:
    short = {"targets": timedelta(days=200), "snapshot": timedelta(days=80)}  # current ones are 90 / 30 days
    repo = fleet.store()
    versions = {r: repo.open(r).signed.version for r in ("root", "targets", "snapshot", "timestamp")}
    online = tmp_path / "online"  # the workstation's cron: snapshot and timestamp keys only
    online.mkdir()
    for role in ("snapshot", "timestamp"):
        for path in fleet.keys.glob(f"{role}-*.key"):
            shutil.copy(path, online / path.name)
    report = refresh(fleet.repo, online, expiry=short)
    assert report["targets"].startswith("WARNING: targets expire") and "root" not in report
    assert report["snapshot"] == f"re-signed as version {versions['snapshot'] + 1}"
    assert repo.open("targets").signed.version == versions["targets"]
    report = refresh(fleet.repo, fleet.keys, expiry=short)  # offline targets keys brought in
    assert report["targets"] == f"re-signed as version {versions['targets'] + 1}"
    assert repo.open("timestamp").signed.version == versions["timestamp"] + 2  # one per refresh
    with serving(fleet.repo) as url:
        result = fleet.robot(url).check()
    assert (result.status, result.release) == ("staged", 1)


def test_keys_never_inside_the_served_repository(tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="never be in a directory that is served"):
        init_repository(tmp_path / "repo", tmp_path / "repo" / "keys")
    init_repository(tmp_path / "repo2", tmp_path / "keys")
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "keys").glob("*.key")}
    assert modes == {0o600}
    assert not list((tmp_path / "repo2").rglob("*.key"))


def test_unsigned_bundle_is_not_published(fleet: Fleet, tmp_path: Path) -> None:
    unsigned = tmp_path / "unsigned"
    shutil.copytree(fleet.bundles["r2"], unsigned)
    (unsigned / "manifest.sig").unlink()
    with pytest.raises(PublishError, match=r"manifest\.sig: missing"):
        publish_bundle(fleet.repo, fleet.keys, unsigned)


def test_staging_leftovers_from_a_crash_are_cleaned(tmp_path: Path) -> None:
    store = ReleaseStore(tmp_path / "releases")
    (store.root / ".staging-crash").mkdir()
    (store.root / ".staging-crash" / "agent_0.onnx").write_bytes(b"half")
    (store.root / "7").mkdir()  # a release dir no pointer names
    store.clean()
    assert store.listing() == {"pointers": {"current": None, "previous": None, "staged": None}, "entries": []}


@pytest.fixture(autouse=True)
def _quiet_ort(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.ERROR, logger="kdmarl_student.policy")
    yield


def test_fleet_modules_import_neither_torch_nor_the_teacher() -> None:
    code = ("import sys; import kdmarl_student.fleet_update, kdmarl_student.fleet_repo, kdmarl_student.fleet_serve, "
            "kdmarl_student.release_slot; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'kdmarl_teacher', 'onnx')))")
    src = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": src})
    assert out.stdout.strip() == "[]"


def test_store_changes_from_two_processes_are_serialized(tmp_path: Path) -> None:
    """The updater and the student's slot live in different processes: read-modify-write of status.json under the
    store lock loses no update (without the lock, two writers interleave and increments vanish)."""
    code = ("import sys; from kdmarl_student.release_store import ReleaseStore\n"
            "store = ReleaseStore(sys.argv[1])\n"
            "def bump(s): s['n'] = s.get('n', 0) + 1\n"
            "for _ in range(150): store.update_status(bump)\n")
    src = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "releases")], env=env) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert ReleaseStore(tmp_path / "releases").status()["n"] == 300


def test_updater_stages_and_the_slot_switches_on_one_release_store(fleet: Fleet) -> None:
    """The flow on a robot: the updater stages release 2 while release 1 acts, the slot switches at the cut-over and
    writes the pointers, the next check finds nothing new and keeps both releases on disk (2 running, 1 for revert)."""
    from kdmarl_student.release_slot import ReleaseSlot

    obs = np.zeros(18, np.float32)
    with serving(fleet.repo) as url:
        robot = fleet.robot(url)
        run_release_1(robot)
        slot = ReleaseSlot(AGENT, public_key=fleet.pub, store=robot.store)
        assert slot.start_from_store() == 1
        fleet.publish()
        assert robot.check().status == "staged"
        slot.stage(2, robot.store.path("staged"), cutover_episode=1)
        slot.act(obs, episode=0, step=0)
        assert slot.release == 1
        slot.act(obs, episode=1, step=0)
        slot.sync_store()
        assert slot.release == 2
        assert robot.check().status == "up_to_date"
    assert robot.store.listing() == {"pointers": {"current": 2, "previous": 1, "staged": None}, "entries": ["1", "2"]}
