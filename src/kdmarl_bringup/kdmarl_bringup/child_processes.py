"""Child ROS processes in one isolated domain, always cleaned up: the bringup tests and the swarm benchmarks.

Each process group gets its own ``ROS_DOMAIN_ID`` (from :func:`kdmarl_student.testing.fresh_domain_id`) with
discovery limited to localhost and covering every participant id (:mod:`kdmarl_bringup.discovery`), so runs side by
side on one machine (several engineers, CI, a benchmark next to a test) cannot hear each other. Every child runs in
its own session: ``stop`` sends SIGINT to the group, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from kdmarl_student.testing import fresh_domain_id as testing_domain_id

from kdmarl_bringup.discovery import swarm_discovery_env
from kdmarl_bringup.swarm_runner import stop_process_groups


def fresh_domain_id() -> int:
    """A ROS domain for one test or benchmark, from this package's range (the student suite may run beside it)."""
    return testing_domain_id("kdmarl_bringup")


def ros_env(domain_id: int) -> dict[str, str]:
    """The environment for child processes: this interpreter's PYTHONPATH (source or install tree) + domain."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.update(swarm_discovery_env(env))  # past 32 processes LOCALHOST alone loses pairs (kdmarl_bringup.discovery)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


class Processes:
    """Child processes of one test, each in its own session; ``stop`` sends SIGINT, then SIGKILL."""

    def __init__(self, domain_id: int, log_dir: Path) -> None:
        self.env = ros_env(domain_id)
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, module: str, *args: str, params: dict[str, Any] | None = None,
              ros_args: list[str] | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", module, *args]
        extra = list(ros_args or [])
        for key, value in (params or {}).items():
            extra += ["-p", f"{key}:={_param_text(value)}"]
        if extra:
            cmd += ["--ros-args", *extra]
        log = (self.log_dir / f"{name}.log").open("w")
        proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"----- {n}\n{self.log(n)[-3000:]}" for n in self.procs)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, name: str, timeout: float = 15.0) -> int:
        proc = self.procs[name]
        stop_process_groups([proc], timeout)
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    return str(value)
