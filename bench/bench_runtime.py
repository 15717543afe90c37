"""Runtime benchmark (issue 5 §5): per agent, batch 1, warm, single thread, >= 10 000 calls.

For each agent: the teacher actor in torch and in ONNX Runtime (the same network, the agent's one-hot
baked in) and the agent's student in ONNX Runtime; p50 / p99 latency of one call, and the resident memory
of a process that has loaded only that model. Also the time ``StudentPolicy`` takes to load and verify one
agent of the bundle (manifest, sha256, ONNX I/O check, dummy inference).

Every measurement runs in its own fresh interpreter, so RSS shows what a robot process pays for that
model and runtime (a torch process carries torch), and no measurement warms another's caches.

    python bench/bench_runtime.py                                # synthetic team (see below)
    python bench/bench_runtime.py --run runs/NAME --bundle bundles/NAME

Synthetic team (no trained run needed; latency does not depend on weight values): a teacher actor of the
default MAPPO config and the students the ``spread3_hetero`` team config picks for each agent's hardware
profile, random weights, exported with ``kdmarl export``'s own code.
Writes ``bench/results/runtime.json`` through ``benchlib.write_result``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent

# ------------------------------------------------------------------------------------------- workers
# Each worker prints one JSON line; it imports only what its runtime needs.


def _rss() -> int:
    import psutil  # noqa: PLC0415

    return int(psutil.Process().memory_info().rss)


def _percentiles(times_s: list[float]) -> dict[str, float]:
    import numpy as np  # noqa: PLC0415

    ms = np.asarray(times_s) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def worker_ort(model: str, input_dim: int, calls: int, warmup: int) -> dict[str, Any]:
    import numpy as np  # noqa: PLC0415
    import onnxruntime as ort  # noqa: PLC0415

    rss0 = _rss()
    from kdmarl_student.policy import session_options  # noqa: PLC0415  the robot runtime's options

    session = ort.InferenceSession(model, sess_options=session_options(1), providers=["CPUExecutionProvider"])
    name, out = session.get_inputs()[0].name, session.get_outputs()[0].name
    feed = {name: np.random.default_rng(0).normal(size=(1, input_dim)).astype(np.float32)}
    for _ in range(warmup):
        session.run([out], feed)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        session.run([out], feed)
        times.append(time.perf_counter() - t0)
    return {**_percentiles(times), "rss_bytes": _rss(), "rss_model_bytes": _rss() - rss0}


def worker_torch(run: str, agent_index: int, calls: int, warmup: int) -> dict[str, Any]:
    import torch  # noqa: PLC0415
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.export.onnx_models import TeacherAgentActor  # noqa: PLC0415

    torch.set_num_threads(1)
    rss0 = _rss()
    teacher = load_teacher(run)
    agent = teacher.spec.agents[agent_index]
    module = TeacherAgentActor(teacher.actor, agent_index, agent.obs_dim, agent.n_actions).eval()
    x = torch.randn(1, agent.obs_dim, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(x)
        for _ in range(calls):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
    return {**_percentiles(times), "rss_bytes": _rss(), "rss_model_bytes": _rss() - rss0}


def worker_load(bundle: str, agent: str, repeats: int) -> dict[str, Any]:
    from kdmarl_student.policy import StudentPolicy  # noqa: PLC0415

    first = time.perf_counter()
    StudentPolicy(bundle, agent)
    cold = time.perf_counter() - first
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        StudentPolicy(bundle, agent)
        times.append(time.perf_counter() - t0)
    return {"cold_ms": cold * 1e3, **{f"warm_{k}": v for k, v in _percentiles(times).items()}}


def _spawn(*worker_args: str) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, __file__, "--worker", *worker_args], capture_output=True, text=True,
                            env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker {worker_args} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ synthetic
def synthetic_team(root: Path, team: str) -> tuple[Path, Path]:
    """A random-weight teacher.pt and students.pt laid out like a real run, and its exported bundle."""
    import torch  # noqa: PLC0415
    from kdmarl_teacher.algos.config import TeacherConfig  # noqa: PLC0415
    from kdmarl_teacher.algos.teacher import TEACHER_FILE, load_teacher, teacher_payload  # noqa: PLC0415
    from kdmarl_teacher.core.networks import Actor, Critic  # noqa: PLC0415
    from kdmarl_teacher.core.resources import module_resources  # noqa: PLC0415
    from kdmarl_teacher.core.run_files import atomic_save  # noqa: PLC0415
    from kdmarl_teacher.core.value_norm import IdentityNorm  # noqa: PLC0415
    from kdmarl_teacher.distill.profiles import load_team  # noqa: PLC0415
    from kdmarl_teacher.distill.students import StudentMLP  # noqa: PLC0415
    from kdmarl_teacher.distill.students_file import students_payload  # noqa: PLC0415
    from kdmarl_teacher.export.bundle import export_bundle  # noqa: PLC0415
    from kdmarl_teacher.export.onnx_models import load_student_agents  # noqa: PLC0415

    torch.manual_seed(0)
    cfg = TeacherConfig()
    team_cfg = load_team(team)
    spec = team_cfg.spec
    actor_kwargs = {"obs_dim_max": spec.obs_dim_max, "n_agents": spec.n_agents, "n_actions": list(spec.n_actions),
                    "hidden": list(cfg.actor_hidden), "activation": cfg.activation}
    critic_kwargs = {"state_dim": spec.state_dim, "n_agents": spec.n_agents, "hidden": list(cfg.critic_hidden)}
    actor, critic = Actor(**actor_kwargs), Critic(**critic_kwargs)
    run = root / "runs" / "synthetic"
    atomic_save(teacher_payload({}, spec, actor=actor, actor_kwargs=actor_kwargs, critic=critic,
                                critic_kwargs=critic_kwargs, value_norm=IdentityNorm(), global_step=0, iteration=0),
                run / TEACHER_FILE)
    teacher_flops = module_resources(actor).flops
    team_cfg = load_team(team, max_flops=teacher_flops)
    students = [StudentMLP(a.input_dim, a.rung.hidden, a.n_actions) for a in team_cfg.agents]
    atomic_save(students_payload(team_cfg, students, {}, {}, step=0), run / "students.pt")
    teacher = load_teacher(run)
    bundle = export_bundle(spec=spec, agents=load_student_agents(run / "students.pt"), teacher_actor=teacher.actor,
                           out_dir=root / "bundles" / "synthetic", source=f"synthetic ({team})", eval_seeds=(),
                           parity_recorded=1000, latency_calls=200)
    return run, bundle


# --------------------------------------------------------------------------------------------- driver
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="run directory with teacher.pt (torch teacher)")
    parser.add_argument("--bundle", type=Path, help="bundle directory (students and teacher actor as ONNX)")
    parser.add_argument("--team", default="spread3_hetero", help="team config of the synthetic team")
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--load-repeats", type=int, default=20)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        kind, *rest = args.worker
        if kind == "ort":
            out = worker_ort(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
        elif kind == "torch":
            out = worker_torch(rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
        else:
            out = worker_load(rest[0], rest[1], int(rest[2]))
        print(json.dumps(out))
        return 0

    from benchlib import write_result  # noqa: PLC0415

    tmp = None
    if args.run is None or args.bundle is None:
        tmp = tempfile.TemporaryDirectory(prefix="kdmarl-bench-")
        run, bundle = synthetic_team(Path(tmp.name), args.team)
        source = f"synthetic team '{args.team}' (random weights, default teacher config)"
    else:
        run, bundle = args.run, args.bundle
        source = f"{run} + {bundle}"
    manifest = json.loads((bundle / "manifest.json").read_text())
    teacher = manifest["teacher"]
    n = str(args.calls)
    w = str(args.warmup)
    rows, ratios = [], []
    for index, agent in enumerate(manifest["agents"]):
        name = agent["name"]
        torch_t = _spawn("torch", str(run), str(index), n, w)
        teacher_ort = _spawn("ort", str(bundle / teacher["file"]), str(teacher["input_dim"]), n, w)
        student = _spawn("ort", str(bundle / agent["model"]["file"]), str(agent["observation"]["input_dim"]), n, w)
        load = _spawn("load", str(bundle), name, str(args.load_repeats))
        ratio = student["p50_ms"] / teacher_ort["p50_ms"]
        ratios.append(ratio)
        rows.append({
            "agent": name,
            "student": agent["model"]["architecture"],
            "student_flops": agent["resources"]["flops_per_decision"],
            "teacher_flops": teacher["resources"]["flops_per_decision"],
            "teacher_torch_p50_ms": round(torch_t["p50_ms"], 4),
            "teacher_torch_p99_ms": round(torch_t["p99_ms"], 4),
            "teacher_torch_rss_mb": round(torch_t["rss_bytes"] / 2**20, 1),
            "teacher_ort_p50_ms": round(teacher_ort["p50_ms"], 4),
            "teacher_ort_p99_ms": round(teacher_ort["p99_ms"], 4),
            "teacher_ort_rss_mb": round(teacher_ort["rss_bytes"] / 2**20, 1),
            "student_ort_p50_ms": round(student["p50_ms"], 4),
            "student_ort_p99_ms": round(student["p99_ms"], 4),
            "student_ort_rss_mb": round(student["rss_bytes"] / 2**20, 1),
            "student_vs_teacher_ort_p50": round(ratio, 3),
            "bundle_load_cold_ms": round(load["cold_ms"], 2),
            "bundle_load_warm_p50_ms": round(load["warm_p50_ms"], 2),
        })
        print(json.dumps(rows[-1]))
    worst = max(ratios)
    write_result(
        "runtime",
        title="On-board runtime: teacher actor (torch, ONNX Runtime) vs students (ONNX Runtime), batch 1, 1 thread",
        columns=list(rows[0]),
        rows=rows,
        targets=[{"what": "student p50 / teacher ONNX p50 (every agent)", "target": "<= 0.5",
                  "reached": f"{worst:.3f} (worst agent)", "met": bool(worst <= 0.5)}],
        notes=[
            f"source: {source}",
            f"{args.calls} timed calls after {args.warmup} warm-up calls, batch 1, intra-op threads 1 "
            "(torch.set_num_threads(1)); one fresh process per measurement; RSS after the calls.",
            "Latency is one session.run / forward call; StudentPolicy.act adds observation checks and sensing.",
            "bundle_load: StudentPolicy construction (manifest + schema, sha256, ONNX I/O check, dummy inference); "
            "cold = first in a fresh process (includes imports' lazy work), warm = repeated.",
        ],
        extra={"bundle_manifest_source": manifest["producer"]["source"]},
    )
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
