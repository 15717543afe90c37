"""Robot side of fleet updates (issue 23): fetch a team's newest release with TUF, check it, stage it atomically.

ROS-free (the node is :mod:`kdmarl_student.updater_node`; ``python -m kdmarl_student.fleet_update`` runs the same
loop without ROS). One :meth:`FleetUpdater.check`:

1. ``tuf.ngclient.Updater.refresh()`` against the repository URL (the workstation for the lead, the lead's mirror
   for followers): root chain, timestamp, snapshot, targets, each verified (signatures and thresholds,
   versions never going back, expiry). An expired timestamp means nobody re-signed it: the robot keeps its
   release, logs a WARNING and reports ``frozen``.
2. ``<team>/release.json`` (the release index, a target like any other) names the release, what it supersedes
   and its files; every file must be a target of the same team and release (its ``custom.kdmarl``), or the
   release mixes two releases and is refused.
3. The manifest, its signature and this robot's model (every model for a lead, which mirrors them) are
   downloaded by ``Updater.download_target`` (length bounded by the signed metadata, so endless data stops at the
   signed length; sha256 checked) into a hidden staging directory.
4. The bundle's own ed25519 signature (:mod:`kdmarl_student.signing`, the bundle key configured on the robot),
   the downloaded models' sha256 (:meth:`Manifest.read_model`), the release listing exactly the manifest's
   agents' models and no other file, this
   robot's agent present, and this device's budget (:func:`kdmarl_student.budget.budget_excess` on the agent's
   FLOPs, parameters and memory; the latency is measured on the robot by :class:`~kdmarl_student.release_slot.
   ReleaseSlot`); finally the agent's policy is loaded with ONNX Runtime and runs one dummy inference.
5. Only then the staging directory is renamed to ``releases/<release>`` and the ``staged`` pointer (a symlink,
   replaced atomically) names it. The node switches at the announced cut-over (``current``), keeping
   ``previous`` for a revert.

Every refusal leaves the releases directory as it was (the staging directory is removed) and is recorded in
``status.json`` (``last_refusal``). A lead also *mirrors* what it verified: metadata byte for byte from
ngclient's trusted cache (``root_history/N.root.json``, ``targets.json``, ``snapshot.json``, ``timestamp.json``,
renamed to their consistent-snapshot names) and the targets under their hashed names, timestamp last, so its
followers verify the workstation's signatures themselves: a lead that alters a byte is refused by them.

Imports tuf (ngclient), numpy, onnxruntime (policy check); never torch.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import Updater
from tuf.ngclient.urllib3_fetcher import Urllib3Fetcher

from kdmarl_student.atomic import atomic_file
from kdmarl_student.budget import budget_excess
from kdmarl_student.errors import BundleError
from kdmarl_student.manifest import load_manifest
from kdmarl_student.release_store import POINTERS, ReleaseStore, UpdateRefused
from kdmarl_student.signing import MANIFEST_FILE, SIGNATURE_FILE

LOGGER = logging.getLogger("kdmarl_student.fleet_update")

RELEASE_INDEX = "release.json"
MAX_INDEX_AGENTS = 1024

__all__ = ["FleetUpdater", "UpdateResult", "main"]


# --------------------------------------------------------------------------------------------- network
class CountingFetcher(Urllib3Fetcher):
    """ngclient's urllib3 fetcher, counting the bytes received (what a robot pays on the wire for payloads) and
    bounding the whole check in time.

    ngclient's own bound is per gap between bytes (``socket_timeout``): a server trickling one byte every few
    seconds (slow retrieval) could hold a download for hours. Here the body is read with ``read1`` (whatever has
    arrived, at most a chunk), so the deadline is checked after every receive and a check that takes longer than
    ``max_seconds`` fails with ``SlowRetrievalError``.
    """

    def __init__(self, socket_timeout: int = 10, max_seconds: float = 300.0) -> None:
        super().__init__(socket_timeout=socket_timeout, app_user_agent="kdmarl-updater")
        self.bytes_received = 0
        self.requests = 0
        self.max_seconds = max_seconds
        self.deadline = time.monotonic() + max_seconds

    def _fetch(self, url: str) -> Iterator[bytes]:
        self.requests += 1
        self._url = url
        return super()._fetch(url)

    def _chunks(self, response: Any) -> Iterator[bytes]:
        url = getattr(self, "_url", "")
        try:
            while True:
                if time.monotonic() > self.deadline:
                    raise tuf_errors.SlowRetrievalError(
                        f"{url}: the update check took longer than {self.max_seconds:g} s (slow retrieval refused)")
                chunk = response.read1(self.chunk_size)
                if not chunk:
                    return
                self.bytes_received += len(chunk)
                yield chunk
        except urllib3.exceptions.TimeoutError as exc:
            raise tuf_errors.SlowRetrievalError(f"{url}: no byte for {self.socket_timeout} s") from exc
        finally:
            response.release_conn()


@dataclass
class UpdateResult:
    """One check: ``status`` is ``staged`` (a new release is ready), ``up_to_date``, ``frozen`` (expired
    metadata: nothing changes, WARN) or ``refused`` (``reason`` says which file/field/URL and why)."""

    status: str
    release: int | None = None
    reason: str = ""
    bytes_received: int = 0
    requests: int = 0
    seconds: float = 0.0
    team: str = ""
    supersedes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FleetUpdater:
    """Keeps one robot's releases in ``state_dir`` up to date from a TUF repository.

    Args:
        state_dir: ``tuf/`` (ngclient's trusted metadata), ``releases/`` (:class:`ReleaseStore`),
            ``mirror/`` (a lead's copy for its followers).
        repository_url: base URL of the repository or mirror (``metadata/`` and ``targets/`` below it).
        team: the team name the releases are published under.
        agent: this robot's agent; the release must have it.
        trusted_root: the repository's ``1.root.json`` (bytes or path), installed with the robot; used only until
            ngclient has cached a root (later roots are verified from it, rotations included).
        bundle_public_key: the bundle signing key (``kdmarl sign``); every bundle must verify with it.
        device_budget: this robot's limits (``max_flops``, ``max_params``, ``max_memory_bytes``), or None.
        mirror: keep a byte-exact mirror under ``state_dir/mirror`` for followers (lead robots).
        whole_team: download every agent's model (default: only when mirroring). Otherwise a robot downloads the
            manifest, its signature and its own model: the others' files are still checked to be listed, signed
            targets of this release (TUF targets and the signed manifest both carry their hashes), just not
            fetched, so a robot pays for its own model only.
        socket_timeout: seconds without a byte before a download fails.
        max_check_seconds: a whole check (every download of it) taking longer fails (slow retrieval).
    """

    def __init__(self, state_dir: str | Path, repository_url: str, team: str, agent: str, *,
                 trusted_root: bytes | str | Path, bundle_public_key: Any,
                 device_budget: Mapping[str, Any] | None = None, mirror: bool = False,
                 whole_team: bool | None = None, socket_timeout: int = 10,
                 max_check_seconds: float = 300.0) -> None:
        self.state_dir = Path(state_dir)
        self.url = repository_url.rstrip("/")
        self.team, self.agent = team, agent
        self.trusted_root = trusted_root if isinstance(trusted_root, bytes) else Path(trusted_root).read_bytes()
        self.bundle_public_key = bundle_public_key
        self.device_budget = dict(device_budget or {})
        self.metadata_dir = self.state_dir / "tuf"
        self.store = ReleaseStore(self.state_dir / "releases")
        self.mirror_dir = self.state_dir / "mirror" if mirror else None
        self.whole_team = mirror if whole_team is None else whole_team
        if mirror and not self.whole_team:
            raise ValueError("a mirroring (lead) updater must download the whole team (whole_team=True)")
        self.socket_timeout = socket_timeout
        self.max_check_seconds = max_check_seconds

    # ------------------------------------------------------------------------------------------ check
    def check(self) -> UpdateResult:
        """One update attempt; never raises for a bad repository (the result says what happened)."""
        started = time.perf_counter()
        fetcher = CountingFetcher(self.socket_timeout, self.max_check_seconds)
        self.store.clean()
        try:
            result = self._check(fetcher)
        except tuf_errors.ExpiredMetadataError as exc:
            result = UpdateResult("frozen", reason=f"{self.url}/metadata: {exc} (nobody re-signed it: keeping "
                                  "the current release; run kdmarl publish --refresh on the workstation)")
            LOGGER.warning("%s", result.reason)
        except (UpdateRefused, BundleError) as exc:
            result = UpdateResult("refused", reason=str(exc))
        except (tuf_errors.RepositoryError, tuf_errors.DownloadError) as exc:
            result = UpdateResult("refused", reason=f"{self.url}: {type(exc).__name__}: {exc}")
        except OSError as exc:
            result = UpdateResult("refused", reason=f"{self.url}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # a robot's updater must outlive anything a repository can send; logged in full
            LOGGER.exception("update check failed unexpectedly")
            result = UpdateResult("refused", reason=f"{self.url}: unexpected {type(exc).__name__}: {exc}")
        result.bytes_received, result.requests = fetcher.bytes_received, fetcher.requests
        result.seconds = time.perf_counter() - started
        result.team = result.team or self.team
        self._record(result)
        if result.status == "refused":
            LOGGER.error("update refused: %s", result.reason)
        return result

    def _record(self, result: UpdateResult) -> None:
        def edit(status: dict[str, Any]) -> None:
            status.update(last_check={"status": result.status, "release": result.release, "time": time.time()},
                          pointers={p: self.store.pointer(p) for p in POINTERS})
            if result.status in ("refused", "frozen"):
                status["last_refusal"] = {"release": result.release, "reason": result.reason, "time": time.time(),
                                          "status": result.status}
        self.store.update_status(edit)

    def _updater(self, fetcher: CountingFetcher) -> Updater:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        cached = (self.metadata_dir / "root.json").exists()
        return Updater(metadata_dir=str(self.metadata_dir), metadata_base_url=f"{self.url}/metadata/",
                       target_base_url=f"{self.url}/targets/", fetcher=fetcher,
                       bootstrap=None if cached else self.trusted_root)

    def _check(self, fetcher: CountingFetcher) -> UpdateResult:
        updater = self._updater(fetcher)
        updater.refresh()
        index_path = f"{self.team}/{RELEASE_INDEX}"
        index_info = updater.get_targetinfo(index_path)
        if index_info is None:
            raise UpdateRefused(f"{self.url}: the signed targets list no {index_path} (no release of team "
                                f"{self.team!r})")
        release = self._custom(index_info, index_path, "index")["release"]
        known = {self.store.pointer("current"), self.store.pointer("staged")}
        if release in known:
            self._mirror(updater, release, index_info)
            return UpdateResult("up_to_date", release=release)
        newest = max((v for v in known if v is not None), default=None)
        if newest is not None and release < newest:
            raise UpdateRefused(f"{index_path}: release {release} is older than release {newest} on this robot "
                                "(rollback refused)")
        if release in self.store.status().get("reverted", []):
            return UpdateResult("up_to_date", release=release, reason=f"release {release} was reverted here")
        with self.store.staging() as staging:
            updater.download_target(index_info, filepath=str(staging / RELEASE_INDEX))
            index = self._read_index(staging / RELEASE_INDEX, release)
            infos = self._download(updater, index, staging)
            self._verify(staging, index)
            self.store.commit(staging, release)
        LOGGER.info("staged release %d of team %s", release, self.team)
        self._mirror(updater, release, index_info, infos)
        return UpdateResult("staged", release=release, supersedes=index.get("supersedes"))

    # ------------------------------------------------------------------------------------------ checks
    def _custom(self, info: TargetFile, path: str, kind: str) -> dict[str, Any]:
        custom = (info.custom or {}).get("kdmarl") if isinstance(info.custom, dict) else None
        if not isinstance(custom, dict) or custom.get("team") != self.team or type(custom.get("release")) is not int \
                or custom.get("kind") != kind:
            raise UpdateRefused(f"targets metadata, {path}: custom.kdmarl with team {self.team!r}, an integer "
                                f"release and kind {kind!r}; got {custom!r}")
        return custom

    def _read_index(self, path: Path, release: int) -> dict[str, Any]:
        try:
            index = json.loads(path.read_bytes())
        except ValueError as exc:
            raise UpdateRefused(f"{path.name}: a JSON release index: {exc}") from exc
        files = index.get("files") if isinstance(index, dict) else None
        if not isinstance(files, dict) or not 0 < len(files) <= MAX_INDEX_AGENTS + 2 or not all(
                isinstance(p, str) and isinstance(m, dict) and isinstance(m.get("kind"), str)
                and isinstance(m.get("agent", ""), str) for p, m in files.items()):
            raise UpdateRefused(f"{self.team}/{RELEASE_INDEX}: field 'files', an object mapping each file of the "
                                "release to {kind, agent}")
        if index.get("team") != self.team or index.get("release") != release:
            raise UpdateRefused(f"{self.team}/{RELEASE_INDEX}: team {self.team!r} and release {release} as its "
                                f"targets entry says; got team {index.get('team')!r}, release {index.get('release')!r}")
        return index

    def _download(self, updater: Updater, index: Mapping[str, Any], staging: Path) -> dict[str, TargetFile]:
        infos: dict[str, TargetFile] = {}
        names: set[str] = set()
        for path, meta in index["files"].items():
            info = updater.get_targetinfo(path)
            if info is None:
                raise UpdateRefused(f"{self.team}/{RELEASE_INDEX}: lists {path}, which the signed targets "
                                    "metadata do not")
            custom = self._custom(info, path, meta["kind"])
            if custom["release"] != index["release"]:
                raise UpdateRefused(f"targets metadata, {path}: custom.kdmarl.release {index['release']} (the "
                                    f"release being installed); got {custom['release']}: a release mixing "
                                    "two releases is refused")
            name = path.rsplit("/", 1)[-1]
            if not path.startswith(f"{self.team}/{index['release']}/") or name in names or name == RELEASE_INDEX:
                raise UpdateRefused(f"{self.team}/{RELEASE_INDEX}: file {path} outside "
                                    f"{self.team}/{index['release']}/ or repeated")
            names.add(name)
            infos[path] = info
            if self.whole_team or meta.get("kind") != "model" or meta.get("agent") == self.agent:
                updater.download_target(info, filepath=str(staging / name))
        return infos

    def _verify(self, staging: Path, index: Mapping[str, Any]) -> None:
        manifest = load_manifest(staging, public_key=self.bundle_public_key)
        listed = {path.rsplit("/", 1)[-1]: meta or {} for path, meta in index["files"].items()}
        expected = {MANIFEST_FILE: None, SIGNATURE_FILE: None, **{a.model_file: a.name for a in manifest.agents}}
        if set(listed) != set(expected):
            raise UpdateRefused(f"release {index['release']}: exactly the manifest, its signature and one model per "
                                f"manifest agent; missing {sorted(set(expected) - set(listed))}, extra "
                                f"{sorted(set(listed) - set(expected))}")
        wrong = sorted(name for name, agent in expected.items() if agent and listed[name].get("agent") != agent)
        if wrong or sorted(index.get("agents") or []) != sorted(manifest.agent_names):
            raise UpdateRefused(f"{RELEASE_INDEX}: files {wrong} or field 'agents' {index.get('agents')} disagree "
                                f"with the manifest's agents {list(manifest.agent_names)}")
        entry = manifest.agent(self.agent)
        mine = manifest.agents if self.whole_team else (entry,)
        present = {p.name for p in staging.iterdir()}
        wanted = {MANIFEST_FILE, SIGNATURE_FILE, RELEASE_INDEX, *(a.model_file for a in mine)}
        if present != wanted:
            raise UpdateRefused(f"{staging}: downloaded files {sorted(present)}; expected {sorted(wanted)}")
        for agent in mine:
            manifest.read_model(agent)
        _, excess = budget_excess(self.device_budget, {
            "flops": entry.resources.get("flops_per_decision"), "params": entry.resources.get("params"),
            "memory": entry.resources.get("memory_bytes")})
        if excess:
            over = ", ".join(f"{k} {used:g} > {limit:g}" for k, (used, limit) in excess.items())
            raise UpdateRefused(f"{staging.name}/{MANIFEST_FILE}: {entry.field_prefix}.resources over this robot's "
                                f"budget ({over}): release {index['release']} refused")
        from kdmarl_student.policy import StudentPolicy  # noqa: PLC0415  onnxruntime only when a release arrives

        StudentPolicy(staging, self.agent, public_key=self.bundle_public_key, providers=["CPUExecutionProvider"])

    # ------------------------------------------------------------------------------------------ mirror
    def _mirror(self, updater: Updater, release: int, index_info: TargetFile,
                infos: Mapping[str, TargetFile] | None = None) -> None:
        """Copy what was just verified into ``mirror/``: targets first, metadata after, timestamp last."""
        if self.mirror_dir is None:
            return
        release_dir = self.store.root / str(release)
        if not release_dir.is_dir():
            return
        targets = self.mirror_dir / "targets"
        index = json.loads((release_dir / RELEASE_INDEX).read_bytes())
        copies = {f"{self.team}/{RELEASE_INDEX}": (release_dir / RELEASE_INDEX, index_info.hashes["sha256"])}
        for path in index["files"]:
            local = release_dir / path.rsplit("/", 1)[-1]
            copies[path] = (local, infos[path].hashes["sha256"] if infos else _sha256(local))
        for path, (local, digest) in copies.items():
            dirname, _, basename = path.rpartition("/")
            out = targets / dirname / f"{digest}.{basename}"
            if not out.exists():
                with atomic_file(out) as handle:
                    handle.write(local.read_bytes())
        metadata = self.mirror_dir / "metadata"
        files: list[tuple[Path, str]] = [(p, p.name) for p in sorted((self.metadata_dir / "root_history").glob(
            "*.root.json"), key=lambda p: int(p.name.split(".")[0]))]
        for role in ("targets", "snapshot"):
            source = self.metadata_dir / f"{role}.json"
            version = json.loads(source.read_bytes())["signed"]["version"]
            files.append((source, f"{version}.{role}.json"))
        files.append((self.metadata_dir / "timestamp.json", "timestamp.json"))
        for source, name in files:
            data, out = source.read_bytes(), metadata / name
            if not out.exists() or out.read_bytes() != data:
                with atomic_file(out) as handle:
                    handle.write(data)

    # ------------------------------------------------------------------------------------------ status
    def state(self) -> dict[str, Any]:
        return {**self.store.status(), "pointers": {p: self.store.pointer(p) for p in POINTERS}}


# ------------------------------------------------------------------------------------------------- CLI
def _budget_from_args(args: argparse.Namespace) -> dict[str, float]:
    return {k: v for k, v in (("max_flops", args.max_flops), ("max_params", args.max_params),
                              ("max_memory_bytes", args.max_memory_bytes)) if v is not None}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", type=Path, required=True, help="this robot's update state directory")
    parser.add_argument("--url", required=True, help="repository or lead mirror base URL")
    parser.add_argument("--team", required=True)
    parser.add_argument("--agent", required=True, help="this robot's agent name")
    parser.add_argument("--trusted-root", type=Path, required=True, help="the repository's 1.root.json")
    parser.add_argument("--bundle-key", type=Path, required=True, help="bundle signing public key (PEM)")
    parser.add_argument("--max-flops", type=float)
    parser.add_argument("--max-params", type=float)
    parser.add_argument("--max-memory-bytes", type=float)
    parser.add_argument("--mirror", action="store_true", help="lead: keep state/mirror for followers")
    parser.add_argument("--whole-team", action="store_true", help="download every agent's model (implied by --mirror)")
    parser.add_argument("--serve-port", type=int, help="lead: serve state/mirror on this port")
    parser.add_argument("--serve-host", default="127.0.0.1")
    parser.add_argument("--max-check-seconds", type=float, default=300.0,
                        help="a check taking longer is refused (slow retrieval)")
    parser.add_argument("--poll", type=float, default=0.0, help="seconds between checks (0: check once)")
    parser.add_argument("--until-release", type=int, help="with --poll: stop once this release is staged")
    parser.add_argument("--timeout", type=float, default=0.0, help="with --poll: give up after this many seconds")


def main(argv: list[str] | None = None) -> int:
    """``python -m kdmarl_student.fleet_update``: one check, or a polling loop; one JSON line per check."""
    parser = argparse.ArgumentParser(description="kdmarl fleet updater (no ROS)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    updater = FleetUpdater(args.state, args.url, args.team, args.agent, trusted_root=args.trusted_root,
                           bundle_public_key=args.bundle_key, device_budget=_budget_from_args(args),
                           mirror=args.mirror or args.serve_port is not None, whole_team=args.whole_team or None,
                           max_check_seconds=args.max_check_seconds)
    stack = contextlib.ExitStack()
    with stack:
        if args.serve_port is not None:
            from kdmarl_student.fleet_serve import serving  # noqa: PLC0415

            assert updater.mirror_dir is not None
            (updater.mirror_dir / "metadata").mkdir(parents=True, exist_ok=True)
            url = stack.enter_context(serving(updater.mirror_dir, args.serve_host, args.serve_port))
            print(json.dumps({"serving": url}), flush=True)
        started = time.monotonic()
        while True:
            result = updater.check()
            print(json.dumps({**asdict(result), "time": time.time()}), flush=True)
            # a serving lead keeps polling (its followers need it); others may stop at the awaited release
            done = args.serve_port is None and args.until_release is not None \
                and updater.store.pointer("staged") == args.until_release
            if args.poll <= 0 or done or (args.timeout and time.monotonic() - started > args.timeout):
                return 0 if result.status in ("staged", "up_to_date") else 1
            time.sleep(args.poll)


if __name__ == "__main__":
    raise SystemExit(main())
