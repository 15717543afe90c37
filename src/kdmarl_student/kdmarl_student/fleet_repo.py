"""Publishing bundles as releases of a TUF repository (workstation side; issue 23).

A fleet gets its bundles through The Update Framework (``tuf`` 7, the python-tuf metadata API), done the way
python-tuf's own examples do it (``examples/manual_repo/basic_repo.py``, ``examples/repository/_simplerepo.py``):
:class:`FleetRepository` is a ``tuf.repository.Repository`` whose ``open``/``close`` read and write the
repository directory, so publishing is ``edit_targets`` + ``do_snapshot`` + ``do_timestamp``.

Repository directory (served as static files by :mod:`kdmarl_student.fleet_serve`)::

    REPO/metadata/1.root.json 2.root.json ... N.targets.json N.snapshot.json timestamp.json
    REPO/targets/<team>/release.json                 (stored as <sha256>.release.json: consistent snapshots)
    REPO/targets/<team>/<release>/<sha256>.manifest.json, <sha256>.manifest.sig, <sha256>.agent_0.onnx, ...

One release = one new targets version = one new snapshot version = one new timestamp version. The release index
``<team>/release.json`` names the team, the release number, the release it supersedes and every file of the
release; every target also carries ``custom: {"kdmarl": {team, release, supersedes, kind, agent}}``, so a client
can refuse a release whose files do not all belong to it (mix-and-match).

Keys live in a *keystore* directory (``<keyid>.key``, PEM PKCS#8, mode 0600), never inside the repository
directory (refused), never on a robot: robots only get ``1.root.json`` (public keys) and the bundle public key.
Which key signs which role is what root says; any keystore directory holding the right private keys can sign, so
threshold keys can be kept on different machines or media (``--keys`` repeated). Root and targets keys are
meant to be offline (brought out to publish or rotate); snapshot and timestamp keys sign every release and the
timestamp refresh (``kdmarl publish --refresh``), so they live on the publishing workstation.

Imports tuf, securesystemslib and cryptography; never torch: the tests of the robot side build repositories
with it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner, Key
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import Repository

from kdmarl_student.atomic import atomic_file
from kdmarl_student.manifest import load_manifest
from kdmarl_student.signing import MANIFEST_FILE, SIGNATURE_FILE

TOP_LEVEL_ROLES = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
RELEASE_INDEX = "release.json"  # target path <team>/release.json
# Default lifetimes: long for the offline roles, short for timestamp (a robot that gets no fresh timestamp for a
# day stops taking releases and says so: freeze protection).
DEFAULT_EXPIRY = {Root.type: timedelta(days=365), Targets.type: timedelta(days=90),
                  Snapshot.type: timedelta(days=30), Timestamp.type: timedelta(days=1)}
TEAM_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PRETTY = JSONSerializer(compact=False)

__all__ = [
    "DEFAULT_EXPIRY", "RELEASE_INDEX", "FleetRepository", "KeyStore", "PublishError", "Release",
    "init_repository", "publish_bundle", "refresh", "release_paths", "rotate_keys",
]


class PublishError(ValueError):
    """The repository, a key or a bundle does not allow this publication; the message names what and where."""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _is_inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


class KeyStore:
    """Private keys by key id: ``<dir>/<role>-<keyid>.key`` (PEM PKCS#8, mode 0600, encrypted when a passphrase is
    given; the role prefix only tells an operator which files to move to offline media, lookups use the key id).
    New keys go to the first dir."""

    def __init__(self, dirs: Sequence[str | Path] | str | Path, passphrase: bytes | None = None) -> None:
        if isinstance(dirs, (str, Path)):
            dirs = [dirs]
        if not dirs:
            raise PublishError("a keystore directory is required (--keys DIR)")
        self.dirs = [Path(d) for d in dirs]
        self.passphrase = passphrase or None

    def generate(self, role: str) -> CryptoSigner:
        """A new ed25519 key, written to the first keystore dir (created 0700; the file 0600, never overwritten)."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

        private = Ed25519PrivateKey.generate()
        signer = CryptoSigner(private)
        encryption = (serialization.BestAvailableEncryption(self.passphrase) if self.passphrase
                      else serialization.NoEncryption())
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        target = self.dirs[0]
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = target / f"{role}-{signer.public_key.keyid}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        return signer

    def signer(self, key: Key) -> CryptoSigner | None:
        """The signer for ``key`` if one keystore dir holds its private key, else None."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: PLC0415

        for directory in self.dirs:
            for path in sorted(directory.glob(f"*{key.keyid}.key")):
                if not path.is_file():
                    continue
                try:
                    private = load_pem_private_key(path.read_bytes(), password=self.passphrase)
                except (ValueError, TypeError) as exc:
                    raise PublishError(f"{path}: a PEM PKCS#8 private key (with the right passphrase, "
                                       f"$KDMARL_SIGNING_PASSPHRASE, if it is encrypted): {exc}") from exc
                return CryptoSigner(private, key)
        return None

    def signers(self, delegator: Root, role: str) -> list[CryptoSigner]:
        """Every signer this keystore has for ``role`` as ``delegator`` (a root) defines it."""
        found = []
        for keyid in delegator.roles[role].keyids:
            signer = self.signer(delegator.get_key(keyid))
            if signer is not None:
                found.append(signer)
        return found


@dataclass(frozen=True)
class Release:
    """What :func:`publish_bundle` published."""

    team: str
    release: int
    supersedes: int | None
    files: dict[str, dict[str, Any]]  # target path -> {"kind", "agent"?}
    snapshot_version: int
    targets_version: int


def release_paths(team: str, release: int, model_files: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Target paths of one release: manifest, its signature, one model per agent (``{agent: file}``)."""
    base = f"{team}/{release}"
    files: dict[str, dict[str, Any]] = {f"{base}/{MANIFEST_FILE}": {"kind": "manifest"},
                                        f"{base}/{SIGNATURE_FILE}": {"kind": "signature"}}
    for agent, name in model_files.items():
        files[f"{base}/{name}"] = {"kind": "model", "agent": agent}
    return files


def hashed_target_path(targets_dir: Path, path: str, sha256: str) -> Path:
    """Where a consistent-snapshot repository stores target ``path``: ``dir/<sha256>.<basename>``."""
    dirname, _, basename = path.rpartition("/")
    return targets_dir / dirname / f"{sha256}.{basename}"


class FleetRepository(Repository):
    """A TUF repository in a directory, signed with the keys of a :class:`KeyStore`.

    ``open(role)`` reads the newest version of a role from ``metadata/``; ``close(role, md)`` bumps the version,
    sets the expiry, signs with every keystore key root assigns to the role, checks the threshold is met (else
    :class:`PublishError` naming the keys found and needed) and writes the file atomically.
    """

    def __init__(self, repo_dir: str | Path, keystore: KeyStore,
                 expiry: Mapping[str, timedelta] | None = None) -> None:
        self.repo_dir = Path(repo_dir)
        self.metadata_dir = self.repo_dir / "metadata"
        self.targets_dir = self.repo_dir / "targets"
        self.keystore = keystore
        self.expiry = {**DEFAULT_EXPIRY, **(expiry or {})}
        for directory in keystore.dirs:
            if _is_inside(directory, self.repo_dir) or _is_inside(self.repo_dir, directory):
                raise PublishError(f"keystore {directory} is inside (or contains) repository {self.repo_dir}: "
                                   "private keys must never be in a directory that is served")

    # ------------------------------------------------------------------------------------ storage
    def latest_version(self, role: str) -> int:
        pattern = re.compile(rf"^(\d+)\.{role}\.json$")
        versions = [int(m.group(1)) for p in self.metadata_dir.glob(f"*.{role}.json")
                    if (m := pattern.match(p.name))]
        return max(versions, default=0)

    def _path(self, role: str, version: int) -> Path:
        if role == Timestamp.type:
            return self.metadata_dir / "timestamp.json"
        return self.metadata_dir / f"{version}.{role}.json"

    def open(self, role: str) -> Metadata:
        if role == Timestamp.type:
            path = self._path(role, 0)
            exists = path.is_file()
        else:
            version = self.latest_version(role)
            path, exists = self._path(role, version), version > 0
        if exists:
            return Metadata.from_file(str(path))
        signed = {Root.type: Root, Targets.type: Targets, Snapshot.type: Snapshot, Timestamp.type: Timestamp}[role]()
        md = Metadata(signed)
        md.signed.version = 0  # close() bumps it to 1
        return md

    def write(self, role: str, md: Metadata) -> Path:
        """Write ``md`` atomically under its consistent-snapshot name; returns the path."""
        path = self._path(role, md.signed.version)
        with atomic_file(path) as handle:
            handle.write(md.to_bytes(_PRETTY))
        return path

    def sign_with(self, role: str, md: Metadata, signers: Iterable[CryptoSigner]) -> None:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)

    def close(self, role: str, md: Metadata) -> None:
        md.signed.version += 1
        md.signed.expires = _now() + self.expiry[role]
        root = md.signed if role == Root.type else self.root()
        assert isinstance(root, Root)
        signers = self.keystore.signers(root, role)
        self.sign_with(role, md, signers)
        result = root.get_verification_result(role, md.signed_bytes, md.signatures)
        if not result.verified:
            need = root.roles[role].threshold
            raise PublishError(
                f"{role} needs {need} signature(s) of keys {sorted(k[:12] for k in root.roles[role].keyids)}; "
                f"the keystore {[str(d) for d in self.keystore.dirs]} holds {len(signers)} of them "
                f"({sorted(s.public_key.keyid[:12] for s in signers)}): bring the missing key(s) (--keys DIR)")
        self.write(role, md)

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        return {"targets.json": MetaFile(version=self.latest_version(Targets.type))}

    @property
    def snapshot_info(self) -> MetaFile:
        return MetaFile(version=self.latest_version(Snapshot.type))

    # ------------------------------------------------------------------------------------ queries
    def current_release(self, team: str) -> int | None:
        """The release number ``<team>/release.json`` currently names, or None."""
        info = self.targets().targets.get(f"{team}/{RELEASE_INDEX}")
        if info is None:
            return None
        return int(info.custom["kdmarl"]["release"])

    def write_target(self, path: str, data: bytes, custom: Mapping[str, Any]) -> TargetFile:
        """Store a target under its hashed name (atomically) and return its metadata entry."""
        info = TargetFile.from_data(path, data, ["sha256"])
        info.unrecognized_fields["custom"] = {"kdmarl": dict(custom)}
        with atomic_file(hashed_target_path(self.targets_dir, path, info.hashes["sha256"])) as handle:
            handle.write(data)
        return info


def init_repository(repo_dir: str | Path, keys: KeyStore | Sequence[str | Path] | str | Path, *,
                    root_keys: int = 1, root_threshold: int = 1, targets_keys: int = 3, targets_threshold: int = 2,
                    expiry: Mapping[str, timedelta] | None = None) -> FleetRepository:
    """Create an empty repository: root (``root_keys``, threshold ``root_threshold``), targets (``targets_keys``,
    threshold ``targets_threshold``), one snapshot and one timestamp key, all ed25519, written to the keystore."""
    keystore = keys if isinstance(keys, KeyStore) else KeyStore(keys)
    repo = FleetRepository(repo_dir, keystore, expiry)
    if repo.latest_version(Root.type) > 0:
        raise PublishError(f"{repo.metadata_dir}: a repository already exists here (1.root.json found)")
    for count, threshold, role in ((root_keys, root_threshold, Root.type),
                                   (targets_keys, targets_threshold, Targets.type)):
        if not 1 <= threshold <= count:
            raise PublishError(f"{role} threshold must be between 1 and the number of keys ({count}); "
                               f"got {threshold}")
    counts = {Root.type: (root_keys, root_threshold), Targets.type: (targets_keys, targets_threshold),
              Snapshot.type: (1, 1), Timestamp.type: (1, 1)}
    with repo.edit_root() as root:
        root.consistent_snapshot = True
        for role, (count, threshold) in counts.items():
            for _ in range(count):
                root.add_key(keystore.generate(role).public_key, role)
            root.roles[role].threshold = threshold
    with repo.edit_targets():
        pass
    repo.do_snapshot()
    repo.do_timestamp()
    return repo


def _bundle_files(bundle_dir: Path, public_key: Any) -> tuple[Any, dict[str, bytes]]:
    """The files of a release, checked as a robot checks them: manifest (signature verified when a public key is
    given, and required to exist either way), every agent's model (size, sha256, no external data)."""
    if not (bundle_dir / SIGNATURE_FILE).is_file():
        raise PublishError(f"{bundle_dir / SIGNATURE_FILE}: missing; robots require signed bundles "
                           f"(kdmarl sign {bundle_dir} --key KEY)")
    manifest = load_manifest(bundle_dir, public_key=public_key)
    files = {MANIFEST_FILE: (bundle_dir / MANIFEST_FILE).read_bytes(),
             SIGNATURE_FILE: (bundle_dir / SIGNATURE_FILE).read_bytes()}
    for agent in manifest.agents:
        files[agent.model_file] = manifest.read_model(agent).data
    return manifest, files


def publish_bundle(repo_dir: str | Path, keys: KeyStore | Sequence[str | Path] | str | Path, bundle_dir: str | Path,
                   *, team: str | None = None, public_key: Any = None, release: int | None = None,
                   expiry: Mapping[str, timedelta] | None = None) -> Release:
    """Add ``bundle_dir`` to the repository as the next release of ``team`` (default: the manifest's scenario
    name): the targets of the release replace the team's previous ones in targets metadata (the stored files of
    older releases stay, content-addressed), then one snapshot and one timestamp version."""
    keystore = keys if isinstance(keys, KeyStore) else KeyStore(keys)
    repo = FleetRepository(repo_dir, keystore, expiry)
    if repo.latest_version(Root.type) == 0:
        raise PublishError(f"{repo.metadata_dir}: no repository (no 1.root.json); create one with "
                           "kdmarl publish --init --repo DIR --keys KEYDIR")
    bundle_dir = Path(bundle_dir)
    manifest, data = _bundle_files(bundle_dir, public_key)
    team = team or str(manifest.scenario["name"])
    if not TEAM_PATTERN.match(team):
        raise PublishError(f"team name {team!r}: letters, digits, '_', '.', '-' (at most 64), not starting with "
                           "a separator")
    previous = repo.current_release(team)
    number = release if release is not None else (previous or 0) + 1
    if previous is not None and number <= previous:
        raise PublishError(f"release {number} of team {team!r} is not newer than the published release {previous}")
    files = release_paths(team, number, {a.name: a.model_file for a in manifest.agents})
    common = {"team": team, "release": number, "supersedes": previous}
    index = {"team": team, "release": number, "supersedes": previous, "created": _now().isoformat(),
             "agents": list(manifest.agent_names), "files": files}
    infos = {path: repo.write_target(path, data[path.rsplit("/", 1)[1]], {**common, **meta})
             for path, meta in files.items()}
    index_path = f"{team}/{RELEASE_INDEX}"
    infos[index_path] = repo.write_target(index_path, (json.dumps(index, indent=2, sort_keys=True) + "\n").encode(),
                                          {**common, "kind": "index"})
    with repo.edit_targets() as targets:
        for path in [p for p in targets.targets if p.startswith(f"{team}/")]:
            del targets.targets[path]
        targets.targets.update(infos)
    repo.do_snapshot()
    repo.do_timestamp()
    return Release(team=team, release=number, supersedes=previous, files=files,
                   snapshot_version=repo.snapshot().version, targets_version=repo.targets().version)


def refresh(repo_dir: str | Path, keys: KeyStore | Sequence[str | Path] | str | Path,
            expiry: Mapping[str, timedelta] | None = None) -> dict[str, str]:
    """Keep the repository's signatures alive: a new timestamp every time (same snapshot), and any role within the
    last half of its lifetime re-signed as a new version, when the keystore holds a threshold of its keys (snapshot
    and timestamp keys are online; root and targets keys are offline, so for them a warning says to bring them).

    Run it (``kdmarl publish --refresh``) more often than the timestamp lifetime, or robots freeze. Returns, per
    role, what was done or why not (messages starting with ``WARNING`` need an operator).
    """
    keystore = keys if isinstance(keys, KeyStore) else KeyStore(keys)
    repo = FleetRepository(repo_dir, keystore, expiry)
    now = _now()
    report: dict[str, str] = {}

    def due(role: str) -> bool:
        return repo.open(role).signed.expires - now < repo.expiry[role] / 2

    def enough(role: str) -> bool:
        root = repo.root()
        return len(keystore.signers(root, role)) >= root.roles[role].threshold

    if due(Root.type):
        if enough(Root.type):
            md = repo.open(Root.type)
            md.signed.version += 1
            md.signed.expires = now + repo.expiry[Root.type]
            repo.sign_with(Root.type, md, keystore.signers(repo.root(), Root.type))
            repo.write(Root.type, md)
            report[Root.type] = f"re-signed as version {md.signed.version}"
        else:
            report[Root.type] = (f"WARNING: root expires {repo.root().expires.isoformat()}; re-sign it with the root "
                                 "keys (--keys OFFLINE_DIR) before then, or robots freeze")
    if due(Targets.type):
        if enough(Targets.type):
            with repo.edit_targets():
                pass
            report[Targets.type] = f"re-signed as version {repo.targets().version}"
        else:
            report[Targets.type] = (f"WARNING: targets expire {repo.targets().expires.isoformat()}; bring a threshold "
                                    "of targets keys (--keys) before then, or robots freeze")
    snapshot_forced = due(Snapshot.type)
    created, _ = repo.do_snapshot(force=snapshot_forced)
    if created:
        report[Snapshot.type] = f"re-signed as version {repo.snapshot().version}"
    repo.do_timestamp(force=True)
    report[Timestamp.type] = f"version {repo.timestamp().version}, expires {repo.timestamp().expires.isoformat()}"
    return report


def rotate_keys(repo_dir: str | Path, keys: KeyStore | Sequence[str | Path] | str | Path, role: str, *,
                count: int | None = None, threshold: int | None = None,
                expiry: Mapping[str, timedelta] | None = None) -> int:
    """Replace every key of ``role`` with ``count`` new ones (default: as many as before) in a new root version,
    signed by a threshold of the old root keys *and* of the new root keys (TUF's rule for root rotation:
    clients walk 1.root.json -> 2.root.json -> ...). For targets, snapshot or timestamp, that role (and the
    roles that follow from it) is then re-signed with its new keys. Returns the new root version.

    The old private keys are left in the keystore: destroy them once every robot has updated.
    """
    if role not in TOP_LEVEL_ROLES:
        raise PublishError(f"role must be one of {TOP_LEVEL_ROLES}; got {role!r}")
    keystore = keys if isinstance(keys, KeyStore) else KeyStore(keys)
    repo = FleetRepository(repo_dir, keystore, expiry)
    old_md = repo.open(Root.type)
    old_root = old_md.signed
    assert isinstance(old_root, Root)
    old_signers = keystore.signers(old_root, Root.type)
    if len(old_signers) < old_root.roles[Root.type].threshold:
        raise PublishError(f"rotating keys needs {old_root.roles[Root.type].threshold} of the current root keys; "
                           f"the keystore holds {len(old_signers)}")
    count = count or len(old_root.roles[role].keyids)
    threshold = threshold or min(old_root.roles[role].threshold, count)
    if not 1 <= threshold <= count:
        raise PublishError(f"{role} threshold must be between 1 and {count}; got {threshold}")
    new_md = Metadata.from_bytes(old_md.to_bytes())
    new_root = new_md.signed
    assert isinstance(new_root, Root)
    for keyid in list(new_root.roles[role].keyids):
        new_root.revoke_key(keyid, role)
    for _ in range(count):
        new_root.add_key(keystore.generate(role).public_key, role)
    new_root.roles[role].threshold = threshold
    new_root.version += 1
    new_root.expires = _now() + repo.expiry[Root.type]
    new_signers = keystore.signers(new_root, Root.type)
    repo.sign_with(Root.type, new_md, {s.public_key.keyid: s for s in [*old_signers, *new_signers]}.values())
    result = new_root.get_root_verification_result(old_root, new_md.signed_bytes, new_md.signatures)
    if not result.verified:
        raise PublishError(f"root version {new_root.version} is not signed by thresholds of both the old and the "
                           "new root keys")
    repo.write(Root.type, new_md)
    if role == Targets.type:
        with repo.edit_targets():
            pass
        repo.do_snapshot()
        repo.do_timestamp()
    elif role == Snapshot.type:
        repo.do_snapshot(force=True)
        repo.do_timestamp()
    elif role == Timestamp.type:
        repo.do_timestamp(force=True)
    return new_root.version
