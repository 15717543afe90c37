"""Running a sweep's trials: one trial = an ordinary `kdmarl distill` / `kdmarl train` run directory (idempotent:
a finished trial returns its recorded figures, an interrupted one resumes), placed on Ray Tune with one retry
and `--resume` of the experiment."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

from kdmarl_teacher.experiments.report import write_report
from kdmarl_teacher.experiments.spec import (
    TRIAL_FILE,
    Trial,
    expand,
    load_spec,
    load_state,
    report_file,
    resolve_trial_config,
    save_state,
    write_json,
)

_TEACHERS: dict[tuple[str, str, float], Any] = {}  # per worker process: (path, device, mtime) -> Teacher


def cached_teacher(path: str, device: str) -> Any:
    """The frozen teacher, loaded once per worker process (distillation never changes it) and shared by every
    trial that process runs."""
    key = (path, device, os.stat(path).st_mtime)
    if key not in _TEACHERS:
        from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415

        _TEACHERS[key] = load_teacher(path, device)
    return _TEACHERS[key]




def _peak_rss_mb() -> float:
    import resource  # noqa: PLC0415

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def figures_from_report(kind: str, rep: dict[str, Any]) -> dict[str, Any]:
    """The figures a sweep aggregates, from a trial's distill_report.json (or eval.json + config for train)."""
    if kind == "train":
        det = rep["results"]["deterministic"]["team_return"]
        return {"team_return": det["mean"], "team_return_ci95": det["ci95"],
                "random_return": rep["results"]["random"]["team_return"]["mean"],
                "env_steps": rep.get("teacher_global_step")}
    s = rep["students_eval"]
    return {"retention": rep["retention"], "student_return": s["team_return"], "student_ci95": s["ci95"],
            "teacher_return": rep["teacher_eval"]["team_return"], "random_return": rep["random_eval"]["team_return"],
            "min_flops_reduction": rep["min_flops_reduction"], "env_steps": rep["global_step"],
            "train_minutes": rep["wall_time_s"] / 60, "total_minutes": rep["total_time_s"] / 60,
            "team": rep.get("team"), "student_hidden": [a["hidden"] for a in rep["agents"]],
            "student_labels": [a.get("student", f"mlp{a['hidden']}") for a in rep["agents"]],
            "student_flops": [a["flops"] for a in rep["agents"]],
            "student_params": [a["params"] for a in rep["agents"]],
            "teacher_flops": rep["teacher"]["actor_resources"]["flops"],
            "budgets_met": all(a["fits_budget"] for a in rep["agents"]),
            **{f"student_{k}": s[k] for k in ("landmarks_covered", "collisions") if k in s},
            **win_figures(rep)}


def win_figures(rep: dict[str, Any]) -> dict[str, Any]:
    """Battles (SMAX, GRF): win-rate retention and the three win rates it comes from; nothing where no one wins."""
    if rep.get("win_rate_retention") is None:
        return {}
    return {"win_rate_retention": rep["win_rate_retention"], "student_win_rate": rep["students_eval"]["win_rate"],
            "teacher_win_rate": rep["teacher_eval"]["win_rate"], "random_win_rate": rep["random_eval"]["win_rate"]}




def run_trial(t: Trial) -> dict[str, Any]:
    """Run (or continue, or just read) one trial in its own run directory; returns its figures.

    Finished (sweep_trial.json status done, report present): read, nothing recomputed. A checkpoint.pt left by an
    interrupted or failed attempt: continue it (`--resume` of that run). Any exception is recorded in
    sweep_trial.json (with the attempt number) and re-raised, for Tune to retry or report."""
    out = Path(t.dir)
    record_path, rep_path = out / TRIAL_FILE, out / report_file(t.kind)
    record: dict[str, Any] = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if record.get("status") == "done" and rep_path.is_file():
        return {**record["figures"], "recomputed": False}
    if rep_path.is_file():  # the run finished (its report is written last) but the sweep died before recording it
        figures = figures_from_report(t.kind, json.loads(rep_path.read_text()))
        write_json(record_path, {**record, "status": "done", "figures": figures, "finished": rep_path.stat().st_mtime})
        return {**figures, "recomputed": False}
    attempt = int(record.get("attempt", 0)) + 1
    out.mkdir(parents=True, exist_ok=True)
    base = {"trial": t.name, "variant": t.variant, "values": t.values, "teacher": t.teacher,
            "overrides": t.overrides, "kind": t.kind, "attempt": attempt, "host": os.uname().nodename,
            "pid": os.getpid()}
    write_json(record_path, {**base, "status": "running", "started": time.time()})
    t0, rss0 = time.time(), _current_rss_mb()
    try:
        import torch  # noqa: PLC0415

        cfg = resolve_trial_config(t)
        torch.set_num_threads(t.cpus)
        resume = (out / "checkpoint.pt").is_file()
        if t.kind == "distill":
            from kdmarl_teacher.distill.loop import distill  # noqa: PLC0415

            t_load = time.time()
            teacher = cached_teacher(t.teacher, cfg.device)
            load_s = time.time() - t_load
            rep = distill(cfg, teacher, out, teacher_path=t.teacher, resume=resume, progress=False)
        else:
            from kdmarl_teacher.algos.mappo import train  # noqa: PLC0415
            from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
            from kdmarl_teacher.evaluation.evaluate import evaluate  # noqa: PLC0415

            load_s = 0.0
            teacher_file = train(cfg, out, resume=resume, progress=False)
            rep = evaluate(load_teacher(teacher_file, cfg.device), episodes=t.eval_episodes, seed_start=1000,
                           device=cfg.device)
            rep["headline_policy"] = "deterministic"
            write_json(rep_path, rep)
    except BaseException as err:
        write_json(record_path, {**base, "status": "error", "error": f"{type(err).__name__}: {err}",
                                  "traceback": traceback.format_exc(), "wall_s": round(time.time() - t0, 2)})
        raise
    figures = figures_from_report(t.kind, rep)
    write_json(record_path, {**base, "status": "done", "resumed_run": resume, "figures": figures,
                              "wall_s": round(time.time() - t0, 2), "teacher_load_s": round(load_s, 3),
                              "rss_start_mb": round(rss0, 1), "rss_end_mb": round(_current_rss_mb(), 1),
                              "peak_rss_mb": round(_peak_rss_mb(), 1), "finished": time.time()})
    return {**figures, "recomputed": True}


def tune_trainable(config: dict[str, Any], trials: dict[str, dict[str, Any]] | None = None) -> None:
    """What Ray Tune runs: one trial (config["trial"] is its name; `trials` maps names to `Trial` dicts, put in
    the object store once by `tune.with_parameters`), reported once at the end. The trial's own output goes to
    sweep_trial.log in its run directory."""
    import contextlib  # noqa: PLC0415

    from ray import tune  # noqa: PLC0415

    t = Trial(**(trials or {})[config["trial"]])
    Path(t.dir).mkdir(parents=True, exist_ok=True)
    with (Path(t.dir) / "sweep_trial.log").open("a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        figures = run_trial(t)
    tune.report({k: v for k, v in figures.items() if isinstance(v, int | float | bool) and v is not None})


def _trial_name(trial: Any) -> str:
    return trial.config["trial"]


def init_ray(address: str | None, cpus: int | None) -> None:
    import ray  # noqa: PLC0415

    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        return
    # Local workers import kdmarl_* from where this process did (a source checkout on PYTHONPATH included).
    import kdmarl_student  # noqa: PLC0415
    import kdmarl_teacher  # noqa: PLC0415

    dirs = [str(Path(m.__file__).resolve().parent.parent) for m in (kdmarl_teacher, kdmarl_student)]
    os.environ["PYTHONPATH"] = os.pathsep.join([*dirs, *filter(None, os.environ.get("PYTHONPATH", "").split(
        os.pathsep))])
    ray.init(address="local", num_cpus=cpus or os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)


def run_sweep(spec_path: str | Path | None, out: str | Path, *, address: str | None = None, cpus: int | None = None,
              resume: bool = False) -> dict[str, Any]:
    """Expand, run (or resume) the sweep on Ray Tune, then write its report; returns the report."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "1")
    out = Path(out).resolve()
    saved = out / "trials.json"
    if resume:
        if not saved.is_file():
            raise FileNotFoundError(f"--resume: {saved} does not exist (nothing to resume in {out})")
        data, trials = load_state(out)
        if spec_path is not None:
            spec = load_spec(spec_path)
            now = [dataclasses.asdict(t) for t in expand(spec, out)]
            if now != data["trials"]:
                raise ValueError(f"--resume: {spec_path} expands to other trials than the sweep in {out} "
                                 f"(its spec: {data['source']}); resume without a spec or use another --out")
    else:
        if spec_path is None:
            raise ValueError("give a sweep spec (SPEC.yaml), --resume or --report")
        if saved.exists() or (out / "tune").exists():
            raise FileExistsError(f"{out} already holds a sweep; use --resume or another --out")
        spec = load_spec(spec_path)
        trials = expand(spec, out)
        save_state(out, spec, trials)
    print(f"kdmarl sweep: {len(trials)} trials -> {out / 'trials'}", flush=True)

    import ray  # noqa: PLC0415
    from ray import tune  # noqa: PLC0415

    init_ray(address, cpus)
    t0 = time.time()
    try:
        cpus_per_trial = trials[0].cpus
        trainable = tune.with_resources(
            tune.with_parameters(tune_trainable, trials={t.name: dataclasses.asdict(t) for t in trials}),
            {"cpu": cpus_per_trial})
        tune_dir = out / "tune"
        if resume and tune.Tuner.can_restore(str(tune_dir)):
            tuner = tune.Tuner.restore(str(tune_dir), trainable=trainable, resume_errored=True)
        else:  # a sweep killed before Tune saved its first state: start it again (finished trials are read back)
            tuner = tune.Tuner(
                trainable,
                param_space={"trial": tune.grid_search([t.name for t in trials])},
                tune_config=tune.TuneConfig(reuse_actors=True, trial_name_creator=_trial_name,
                                            trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(name="tune", storage_path=str(out),
                                          failure_config=tune.FailureConfig(max_failures=1), verbose=1))
        grid = tuner.fit()
        errors = {}
        for result in grid:
            name = result.config["trial"] if result.config else "?"
            if result.error is not None:
                errors[name] = " ".join(str(result.error).split())[-2000:]
        write_json(out / "tune_errors.json", errors)
    finally:
        ray.shutdown()
    wall = time.time() - t0
    rep = write_report(out, sweep_wall_s=wall)
    print(f"kdmarl sweep: {rep['done']} of {rep['n_trials']} trials done, {len(rep['failed'])} failed, "
          f"{wall:.0f} s; wrote {out / 'sweep_report.json'}")
    return rep


