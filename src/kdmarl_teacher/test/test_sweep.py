"""`kdmarl sweep` on a real local Ray with real (tiny) distillations: spec errors, interruption and resume,
failed-trial reporting, and the aggregate checked against a direct numpy/scipy computation.

The grid: variants `full` and `no_kl` (the reference and a loss switch) x seeds 1, 2, plus a variant that fails
inside every run it starts (resource-aware pruning of recurrent students, refused by `distill`), so the retry
and the error report are exercised too. 4800 env steps per trial, 20 evaluation episodes, 2 CPUs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from kdmarl_teacher.experiments import spec as sweep_spec
from kdmarl_teacher.experiments import sweep
from scipy import stats

BASE = {"num_envs": 32, "num_steps": 25, "total_steps": 32 * 25 * 6, "eval_episodes": 20, "lr": 0.01,
        "checkpoint_every": 2}


def _spec(tmp: Path, teacher_file: Path, **over: object) -> Path:
    spec = {"kind": "distill", "teacher": str(teacher_file), "base": BASE, "grid": {"seed": [1, 2]},
            "variants": {"full": {}, "no_kl": {"use_kl": False},
                         "broken": {"resource_aware": True, "memory": "recurrent"}},
            "reference": "full", "metric": "retention", **over}
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _cli(*args: str, **kw: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "kdmarl_teacher.cli", "sweep", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            **kw)


def _records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "trials").glob(f"*/{sweep_spec.TRIAL_FILE}")}


@pytest.mark.parametrize(("over", "field"), [
    ({"grid": {"w_kl": [-1.0]}}, "grid.w_kl[0]"),
    ({"variants": {"full": {}, "x": {"use_foo": False}}}, "variants.x.use_foo"),
    ({"reference": "nope"}, "reference"),
    ({"grid": {"seed": []}}, "grid.seed"),
    ({"metric": "accuracy"}, "metric"),
    ({"teacher": "/nonexistent/teacher.pt"}, "teacher"),
    ({"epochs": 3}, "epochs"),
])
def test_spec_errors_name_the_file_and_field(teacher_path: Path, tmp_path: Path, over: dict,
                                             field: str) -> None:
    spec = _spec(tmp_path, teacher_path, **over)
    with pytest.raises(ValueError, match=re.escape(f"spec.yaml: field '{field}'")):
        sweep_spec.expand(sweep_spec.load_spec(spec), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_sweep_interrupt_resume_and_aggregate(teacher_path: Path, tmp_path: Path) -> None:
    spec, out = _spec(tmp_path, teacher_path), tmp_path / "sweep"

    # 1. Start the sweep and kill it (SIGKILL, the whole process group: driver and local Ray) once a trial is done.
    proc = _cli(str(spec), "--out", str(out), "--cpus", "2")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(r.get("status") == "done" for r in _records(out).values()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the sweep ended before it could be interrupted:\n{proc.stdout.read()}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    done_before = {name: r for name, r in _records(out).items() if r.get("status") == "done"}
    assert done_before and len(done_before) < 6
    reports = {name: out / "trials" / name / "distill_report.json" for name in done_before}
    stamp = {name: (p.stat().st_mtime_ns, p.read_bytes()) for name, p in reports.items()}

    # 2. Resume: nothing finished is recomputed, every good trial ends done, the broken ones are reported.
    proc = _cli("--resume", "--out", str(out), "--cpus", "2")
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, log  # 1: some trials failed (the broken variant)
    for name, p in reports.items():
        assert (p.stat().st_mtime_ns, p.read_bytes()) == stamp[name], f"{name} was recomputed"
        assert _records(out)[name]["finished"] == done_before[name]["finished"]
    records = _records(out)
    good = [n for n in records if not n.startswith("broken")]
    assert sorted(good) == ["full_seed=1", "full_seed=2", "no_kl_seed=1", "no_kl_seed=2"]
    assert all(records[n]["status"] == "done" for n in good)
    rep = json.loads((out / "sweep_report.json").read_text())
    assert rep["n_trials"] == 6 and rep["done"] == 4
    failed = {f["trial"]: f for f in rep["failed"]}
    assert sorted(failed) == ["broken_seed=1", "broken_seed=2"]
    for f in failed.values():  # retried once in each of the two sweep runs, the error kept
        assert f["status"] == "error" and f["attempt"] >= 2 and "resource_aware" in f["error"]
    assert "broken_seed=1" in (out / "sweep_report.csv").read_text()

    # 3. The aggregate against a direct computation from the trial reports.
    def retention(name: str) -> float:
        return json.loads((out / "trials" / name / "distill_report.json").read_text())["retention"]

    rows = {r["variant"]: r for r in rep["points"]}
    x = {v: np.array([retention(f"{v}_seed={s}") for s in (1, 2)]) for v in ("full", "no_kl")}
    for v, vals in x.items():
        row = rows[v]
        assert row["n"] == 2 and row["per_seed"] == {"seed=1": vals[0], "seed=2": vals[1]}
        assert math.isclose(row["mean"], vals.mean(), rel_tol=1e-12)
        half = stats.t.ppf(0.975, 1) * vals.std(ddof=1) / math.sqrt(2)
        assert math.isclose(row["ci95"], half, rel_tol=1e-9)
    cmp = rows["no_kl"]["vs_reference"]
    d = x["no_kl"] - x["full"]
    assert cmp["reference"] == "full" and cmp["replicates"] == ["seed=1", "seed=2"]
    assert math.isclose(cmp["mean_diff"], d.mean(), rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(cmp["p_value"], stats.ttest_rel(x["no_kl"], x["full"]).pvalue, rel_tol=1e-9)
    assert math.isclose(cmp["d_z"], d.mean() / d.std(ddof=1), rel_tol=1e-9)
    # two pairs: every resample mean is d[0], d[1] or their mean, and each extreme has probability 1/4, so the
    # 2.5 % and 97.5 % percentiles are exactly the smaller and the larger difference
    assert (cmp["boot_low"], cmp["boot_high"]) == (d.min(), d.max())
    assert rows["broken"]["n"] == 0

    # 4. --report alone (no Ray) rewrites the same aggregate, CSV and figures; a trial is a plain distill run.
    assert sweep.main(["--report", str(out)]) == 0
    again = json.loads((out / "sweep_report.json").read_text())
    assert [r["mean"] for r in again["points"] if r["n"]] == [r["mean"] for r in rep["points"] if r["n"]]
    with (out / "sweep_report.csv").open(newline="") as fh:
        csv_rows = {r["variant"]: r for r in csv.DictReader(fh) if r.get("n_done")}
    for r in again["points"]:
        if r["n"]:
            assert float(csv_rows[r["point"]["variant"]]["mean"]) == pytest.approx(r["mean"], rel=1e-12)
    for name in ("sweep_bars.png", "sweep_pareto.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    trial = out / "trials" / "full_seed=1"
    assert {"students.pt", "distill_config.yaml", "metrics.csv", "checkpoint.pt"} <= {p.name for p in trial.iterdir()}
    assert yaml.safe_load((trial / "distill_config.yaml").read_text())["torch_threads"] == 1


def test_win_rate_metric_on_mpe_is_reported_not_silently_dropped(teacher_path: Path, tmp_path: Path) -> None:
    """metric win_rate_retention on an MPE team (no battles, no wins): the finished trial is listed as failed with
    the reason and the sweep exits 1, instead of an empty grid point and exit 0."""
    spec = _spec(tmp_path, teacher_path, grid={"seed": [1]}, variants={"full": {}}, metric="win_rate_retention")
    out = tmp_path / "sweep"
    proc = _cli(str(spec), "--out", str(out), "--cpus", "1")
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, log
    rep = json.loads((out / "sweep_report.json").read_text())
    (failed,) = rep["failed"]
    assert failed["trial"] == "full_seed=1" and failed["status"] == "no_metric", failed
    assert "'win_rate_retention'" in failed["error"] and "not MPE" in failed["error"]
    assert rep["points"][0]["n"] == 0 and _records(out)["full_seed=1"]["status"] == "done"
