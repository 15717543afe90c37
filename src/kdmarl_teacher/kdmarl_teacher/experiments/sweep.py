"""`kdmarl sweep SPEC.yaml --out runs/NAME`: a grid of distillation (or teacher-training) runs on Ray Tune.

The spec expands into trials (teachers x grid x variants); each trial is an ordinary `kdmarl distill` (or
`kdmarl train`) run directory under ``runs/NAME/trials/<trial>/``, made by the same Python function those
commands call, so any trial can be inspected, resumed or exported on its own. Ray Tune keeps the experiment
(``runs/NAME/tune``): placement of trials on the cores of a local Ray (or a cluster, ``--address``), one retry
of a failed trial (``FailureConfig(max_failures=1)``), and ``--resume`` of an interrupted sweep
(``Tuner.restore(..., resume_errored=True)``). A trial is also idempotent on its own: a finished one (its
``sweep_trial.json`` says done and its report exists) returns its recorded figures without recomputing, and an
interrupted one continues from its ``checkpoint.pt``.

`kdmarl sweep --report runs/NAME` aggregates the trial reports (``sweep_report.json``, ``.csv``, PNGs); it needs
neither Ray nor torch. Spec format, statistics and cluster commands: README, "kdmarl sweep".

Spec (YAML)::

    kind: distill                 # or train (base/grid keys are then `kdmarl train` config keys)
    teacher: runs/spread          # a path, a list of paths (the teacher-seed axis), or {team: path or list};
                                  # $VARS are expanded
    config: null                  # optional distill/train YAML under base (default: the shipped one)
    base: {total_steps: 1500000}  # config keys for every trial
    grid: {seed: [1, 2, 3, 4, 5]} # key -> list of values; the trials are the product (any config key)
    variants:                     # named overrides, crossed with the grid
      full: {}
      minus_kl: {use_kl: false}
    reference: full               # paired comparisons against this variant, on the same seeds
    metric: retention             # distill: retention | student_return | min_flops_reduction; train: team_return
    cpus_per_trial: 1             # Ray CPUs and torch threads of each trial
    eval_episodes: 200            # train only: greedy evaluation after training (eval.json, as kdmarl evaluate)
    bench: {}                     # free-form, ignored here (for the tool that wrote the spec)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

SPEC_FIELDS = ("kind", "teacher", "config", "base", "grid", "variants", "reference", "metric", "cpus_per_trial",
               "eval_episodes", "description", "bench")
METRICS = {"distill": ("retention", "student_return", "min_flops_reduction"), "train": ("team_return",)}
REPLICATE_KEYS = ("teacher", "seed")  # what varies across the replicates of a grid point (paired on these)
TRIAL_FILE = "sweep_trial.json"  # per trial directory: status, figures, error (written by the trial itself)
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the paired bootstrap interval is reproducible
ALPHA = 0.05


# ------------------------------------------------------------------------------------------------ the spec
@dataclasses.dataclass
class Trial:
    name: str
    kind: str
    teacher: str | None  # absolute path (distill)
    teacher_index: int  # position in the teacher list of its team (the teacher-seed axis)
    variant: str
    values: dict[str, Any]  # grid values of this trial (the seed included)
    overrides: dict[str, Any]  # every config key set by the spec for this trial (base, grid, variant, threads)
    config_file: str | None
    dir: str  # absolute trial run directory
    cpus: int
    eval_episodes: int

    def point(self) -> dict[str, Any]:
        """The grid point: variant and every grid value but the replicate keys."""
        return {"variant": self.variant, **{k: v for k, v in self.values.items() if k not in REPLICATE_KEYS}}


def _fail(path: Path, field: str, message: str) -> ValueError:
    return ValueError(f"{path}: field '{field}': {message}")


def _expand_path(value: Any, path: Path, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, field, f"expected a path, got {value!r}")
    expanded = os.path.expandvars(os.path.expanduser(value))
    if "$" in expanded:
        raise _fail(path, field, f"{value!r}: environment variable not set")
    return expanded


def _resolve_file(value: str, spec_path: Path) -> Path:
    """A relative path: from the working directory if it exists there, else from the spec's directory."""
    p = Path(value)
    if p.is_absolute() or p.exists():
        return p.resolve()
    return (spec_path.parent / p).resolve()


def _is_path_like(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or value.endswith((".yaml", ".yml")))


def _fmt(value: Any) -> str:
    if _is_path_like(value):
        value = Path(value).stem
    text = json.dumps(value) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "", text.replace(",", "x")) or "v"


def _set_items(overrides: dict[str, Any]) -> list[str]:
    """Config overrides as `--set key=value` items (JSON is valid YAML, which `parse_set` reads)."""
    return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read and check a spec's shape; every error names the file and the field."""
    from kdmarl_teacher.core.config import load_yaml  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sweep spec")
    spec = load_yaml(path)
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a mapping of sweep spec fields ({', '.join(SPEC_FIELDS)})")
    unknown = sorted(set(spec) - set(SPEC_FIELDS))
    if unknown:
        raise _fail(path, unknown[0], f"unknown sweep spec field (known: {', '.join(SPEC_FIELDS)})")
    kind = spec.setdefault("kind", "distill")
    if kind not in METRICS:
        raise _fail(path, "kind", f"expected 'distill' or 'train', got {kind!r}")
    for field in ("base", "grid", "variants"):
        value = spec.get(field)
        spec[field] = {} if value is None else value
        if not isinstance(spec[field], dict):
            raise _fail(path, field, f"expected a mapping, got {type(value).__name__}")
    for key, values in spec["grid"].items():
        if not isinstance(values, list) or not values:
            raise _fail(path, f"grid.{key}", f"expected a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise _fail(path, f"grid.{key}", f"repeated values in {values}")
    if not spec["variants"]:
        spec["variants"] = {"default": {}}
    for name, over in spec["variants"].items():
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", str(name)):
            raise _fail(path, f"variants.{name}", "a variant name is letters, digits and _ . + - only")
        if over is None:
            spec["variants"][name] = {}
        elif not isinstance(over, dict):
            raise _fail(path, f"variants.{name}", f"expected a mapping of config keys, got {over!r}")
    ref = spec.get("reference")
    if ref is not None and ref not in spec["variants"]:
        raise _fail(path, "reference", f"{ref!r} is not one of the variants {list(spec['variants'])}")
    metric = spec.setdefault("metric", METRICS[kind][0])
    if metric not in METRICS[kind]:
        raise _fail(path, "metric", f"{metric!r}: expected one of {list(METRICS[kind])} for kind {kind}")
    cpus = spec.setdefault("cpus_per_trial", 1)
    if not isinstance(cpus, int) or isinstance(cpus, bool) or cpus < 1:
        raise _fail(path, "cpus_per_trial", f"expected an integer >= 1, got {cpus!r}")
    episodes = spec.setdefault("eval_episodes", 200)
    if not isinstance(episodes, int) or isinstance(episodes, bool) or episodes < 1:
        raise _fail(path, "eval_episodes", f"expected an integer >= 1, got {episodes!r}")
    if "torch_threads" in spec["base"] or "torch_threads" in spec["grid"] or any(
            "torch_threads" in v for v in spec["variants"].values()):
        raise _fail(path, "cpus_per_trial", "torch_threads is set from cpus_per_trial; do not set it in base, "
                                            "grid or variants")
    if spec.get("config") is not None:
        spec["config"] = str(_resolve_file(_expand_path(spec["config"], path, "config"), path))
        if not Path(spec["config"]).is_file():
            raise _fail(path, "config", f"{spec['config']}: no such file")
    if kind == "distill":
        spec["teacher"] = _teachers(spec.get("teacher"), path)
    elif spec.get("teacher") is not None:
        raise _fail(path, "teacher", "kind train trains teachers: give no teacher")
    spec["source"] = str(path.resolve())
    return spec


def _teachers(value: Any, path: Path) -> dict[str, list[str]] | list[str]:
    """teacher: path | [paths] | {team: path | [paths]} -> absolute teacher.pt paths (a list, or per team)."""
    from kdmarl_teacher.algos.teacher import teacher_path  # noqa: PLC0415

    def one(v: Any, field: str) -> str:
        p = teacher_path(_resolve_file(_expand_path(v, path, field), path))
        if not p.is_file():
            raise _fail(path, field, f"no teacher checkpoint at {p}")
        return str(p)

    def many(v: Any, field: str) -> list[str]:
        items = v if isinstance(v, list) else [v]
        if not items:
            raise _fail(path, field, "expected at least one teacher")
        return [one(x, f"{field}[{i}]" if isinstance(v, list) else field) for i, x in enumerate(items)]

    if value is None:
        raise _fail(path, "teacher", "kind distill needs a teacher (a path, a list, or a mapping team -> path)")
    if isinstance(value, dict):
        return {str(team): many(v, f"teacher.{team}") for team, v in value.items()}
    return many(value, "teacher")


def _check_key(spec: dict[str, Any], field: str, key: str, value: Any) -> None:
    """One config key of the spec against the config loader (unknown key, type, range), naming the field."""
    from kdmarl_teacher.algos.config import load_config  # noqa: PLC0415
    from kdmarl_teacher.distill.config import load_distill_config  # noqa: PLC0415

    try:
        if spec["kind"] == "distill":
            load_distill_config(None, _set_items({key: value}))
        else:
            load_config(None, _set_items({key: value}))
    except ValueError as err:
        message = str(err).replace("--set: ", "").replace("--set ", "")
        raise _fail(Path(spec["source"]), field, message) from None


def expand(spec: dict[str, Any], out: Path) -> list[Trial]:
    """The trials of a spec (teachers x grid product x variants), each config resolved and validated."""
    path = Path(spec["source"])
    for key, value in spec["base"].items():
        _check_key(spec, f"base.{key}", key, value)
    for key, values in spec["grid"].items():
        if key == "teacher":
            raise _fail(path, "grid.teacher", "give teachers as the top-level 'teacher' list (the teacher axis)")
        for i, value in enumerate(values):
            _check_key(spec, f"grid.{key}[{i}]", key, value)
    for name, over in spec["variants"].items():
        for key, value in over.items():
            _check_key(spec, f"variants.{name}.{key}", key, value)
    keys = list(spec["grid"])
    combos = [dict(zip(keys, vals, strict=True)) for vals in itertools.product(*spec["grid"].values())]
    trials: list[Trial] = []
    names: set[str] = set()
    for variant, over in spec["variants"].items():
        for values in combos:
            overrides = {**spec["base"], **values, **over, "torch_threads": spec["cpus_per_trial"]}
            if spec["kind"] == "distill":
                team = str(overrides.get("team") or _default_team(spec))
                if isinstance(spec["teacher"], dict):
                    if team not in spec["teacher"]:
                        raise _fail(path, "teacher", f"no teacher given for team {team!r} "
                                                     f"(teams with a teacher: {list(spec['teacher'])})")
                    teachers = spec["teacher"][team]
                else:
                    teachers = spec["teacher"]
            else:
                teachers = [None]
            if _is_path_like(overrides.get("team")):
                overrides["team"] = str(_resolve_file(overrides["team"], path))
            for ti, teacher in enumerate(teachers):
                parts = [variant] + ([f"t{ti}"] if len(teachers) > 1 else [])
                parts += [f"{k}={_fmt(v)}" for k, v in values.items()]
                name = "_".join(parts)
                while name in names:
                    name += "+"
                names.add(name)
                trials.append(Trial(name=name, kind=spec["kind"], teacher=teacher, teacher_index=ti,
                                    variant=variant, values={**values, "teacher": ti} if len(teachers) > 1 else values,
                                    overrides=overrides, config_file=spec.get("config"),
                                    dir=str((out / "trials" / name).resolve()), cpus=spec["cpus_per_trial"],
                                    eval_episodes=spec["eval_episodes"]))
    algos: dict[str, str] = {}
    for t in trials:  # the whole config of each trial, as its run would resolve it (cross-key checks too)
        try:
            resolve_trial_config(t, algos)
        except ValueError as err:
            raise ValueError(f"{path}: trial {t.name}: {err}") from None
    return trials


def _default_team(spec: dict[str, Any]) -> str:
    from kdmarl_teacher.distill.config import load_distill_config  # noqa: PLC0415

    return load_distill_config(spec.get("config")).team


def _teacher_algo(path: str, cache: dict[str, str]) -> str:
    if path not in cache:
        from kdmarl_teacher.core.run_files import load_checkpoint  # noqa: PLC0415

        cache[path] = load_checkpoint(path, "cpu").get("algo", "mappo")
    return cache[path]


def resolve_trial_config(t: Trial, algos: dict[str, str] | None = None) -> Any:
    """The trial's config exactly as `kdmarl distill` / `kdmarl train` resolve theirs (their own functions): the
    spec's `config` file (else the shipped default), then every override as a `--set`."""
    if t.kind == "distill":
        from kdmarl_teacher.distill import cli as distill_cli  # noqa: PLC0415
        from kdmarl_teacher.distill.config import ALL_TERMS  # noqa: PLC0415

        args = argparse.Namespace(config=t.config_file, resume=False, out=t.dir, overrides=_set_items(t.overrides),
                                  team=None, seed=None, device=None, resource_aware=False,
                                  **{f"no_{term}": False for term in ALL_TERMS})
        qmix = _teacher_algo(t.teacher, algos if algos is not None else {}) == "qmix"
        return distill_cli.resolve_config(args, "distill_qmix.yaml" if qmix else "distill.yaml")
    from kdmarl_teacher.algos import ALGORITHMS, train_cli  # noqa: PLC0415

    args = argparse.Namespace(config=t.config_file, resume=False, out=t.dir, overrides=_set_items(t.overrides),
                              scenario=None, seed=None, device=None)
    return train_cli.resolve_config(args, ALGORITHMS["mappo"])


# ----------------------------------------------------------------------------------------------- one trial
_TEACHERS: dict[tuple[str, str, float], Any] = {}  # per worker process: (path, device, mtime) -> Teacher


def cached_teacher(path: str, device: str) -> Any:
    """The frozen teacher, loaded once per worker process (distillation never changes it) and shared by every
    trial that process runs."""
    key = (path, device, os.stat(path).st_mtime)
    if key not in _TEACHERS:
        from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415

        _TEACHERS[key] = load_teacher(path, device)
    return _TEACHERS[key]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from kdmarl_student.atomic import atomic_file  # noqa: PLC0415

    with atomic_file(path) as fh:
        fh.write((json.dumps(_finite(data), indent=2) + "\n").encode())


def _finite(value: Any) -> Any:
    """NaN/inf -> None, recursively: the JSON files stay standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


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
            **{f"student_{k}": s[k] for k in ("landmarks_covered", "collisions") if k in s}}


def report_file(kind: str) -> str:
    return "distill_report.json" if kind == "distill" else "eval.json"


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
        _write_json(record_path, {**record, "status": "done", "figures": figures, "finished": rep_path.stat().st_mtime})
        return {**figures, "recomputed": False}
    attempt = int(record.get("attempt", 0)) + 1
    out.mkdir(parents=True, exist_ok=True)
    base = {"trial": t.name, "variant": t.variant, "values": t.values, "teacher": t.teacher,
            "overrides": t.overrides, "kind": t.kind, "attempt": attempt, "host": os.uname().nodename,
            "pid": os.getpid()}
    _write_json(record_path, {**base, "status": "running", "started": time.time()})
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
            _write_json(rep_path, rep)
    except BaseException as err:
        _write_json(record_path, {**base, "status": "error", "error": f"{type(err).__name__}: {err}",
                                  "traceback": traceback.format_exc(), "wall_s": round(time.time() - t0, 2)})
        raise
    figures = figures_from_report(t.kind, rep)
    _write_json(record_path, {**base, "status": "done", "resumed_run": resume, "figures": figures,
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


# ----------------------------------------------------------------------------------------------- the sweep
def _save_state(out: Path, spec: dict[str, Any], trials: list[Trial]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep_spec.yaml").write_text(yaml.safe_dump({k: v for k, v in spec.items()}, sort_keys=False))
    _write_json(out / "trials.json", {"kind": spec["kind"], "metric": spec["metric"],
                                      "reference": spec.get("reference"), "grid": spec["grid"],
                                      "variants": spec["variants"], "source": spec["source"],
                                      "trials": [dataclasses.asdict(t) for t in trials]})


def load_state(out: Path) -> tuple[dict[str, Any], list[Trial]]:
    path = out / "trials.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file ({out} is not a kdmarl sweep directory)")
    data = json.loads(path.read_text())
    return data, [Trial(**t) for t in data["trials"]]


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
        _save_state(out, spec, trials)
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
        _write_json(out / "tune_errors.json", errors)
    finally:
        ray.shutdown()
    wall = time.time() - t0
    rep = write_report(out, sweep_wall_s=wall)
    print(f"kdmarl sweep: {rep['done']} of {rep['n_trials']} trials done, {len(rep['failed'])} failed, "
          f"{wall:.0f} s; wrote {out / 'sweep_report.json'}")
    return rep


# ---------------------------------------------------------------------------------------------- statistics
def summary(values: list[float]) -> dict[str, Any]:
    """Mean, sample std (ddof=1), 95 % interval half-width across replicates (kdmarl_student.stats)."""
    import numpy as np  # noqa: PLC0415
    from kdmarl_student.stats import ci95_half_width  # noqa: PLC0415

    x = np.asarray(values, dtype=float)
    n = len(x)
    std = float(x.std(ddof=1)) if n >= 2 else float("nan")
    half = ci95_half_width(std, n)
    mean = float(x.mean()) if n else float("nan")
    return {"n": n, "mean": mean, "std": std, "ci95": half, "low": mean - half, "high": mean + half}


def paired(values: list[float], reference: list[float]) -> dict[str, Any]:
    """Paired comparison on the same replicates: mean difference (values - reference), paired t-test p-value
    (scipy.stats.ttest_rel, two-sided), Cohen's d_z = mean(d) / std(d, ddof=1), and the paired bootstrap 95 %
    interval of the mean difference (percentiles of BOOTSTRAP_RESAMPLES resamples of the pairs, fixed seed)."""
    import numpy as np  # noqa: PLC0415
    from scipy import stats  # noqa: PLC0415

    a, b = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    d = a - b
    n = len(d)
    out: dict[str, Any] = {"n_pairs": n, "mean_diff": float(d.mean()) if n else float("nan")}
    sd = float(d.std(ddof=1)) if n >= 2 else float("nan")
    out["std_diff"] = sd
    if n >= 2 and sd > 0:
        out["t"], out["p_value"] = (float(v) for v in stats.ttest_rel(a, b))
        out["d_z"] = float(d.mean() / sd)
    else:
        out["t"] = out["p_value"] = out["d_z"] = float("nan")
    if n >= 2:
        rng = np.random.default_rng(BOOTSTRAP_SEED)
        means = d[rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))].mean(axis=1)
        out["boot_low"], out["boot_high"] = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    else:
        out["boot_low"] = out["boot_high"] = float("nan")
    p = out["p_value"]
    if n < 2 or math.isnan(p):
        out["verdict"] = "cannot tell (fewer than 2 pairs or no variation)"
    elif p < ALPHA:
        out["verdict"] = ("higher" if out["mean_diff"] > 0 else "lower") + f" than the reference (p < {ALPHA})"
    else:
        out["verdict"] = f"cannot tell apart at {n} seeds (p = {p:.2g})"
    return out


def _replicate(t: Trial) -> str:
    return ",".join(f"{k}={t.values[k]}" for k in REPLICATE_KEYS if k in t.values)


def _point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


NUMERIC_FIGURES = ("retention", "student_return", "teacher_return", "random_return", "min_flops_reduction",
                   "train_minutes", "total_minutes", "env_steps", "team_return", "student_landmarks_covered",
                   "student_collisions")


def collect(out: Path) -> tuple[dict[str, Any], list[Trial], dict[str, dict[str, Any]]]:
    """trials.json and each trial's record (sweep_trial.json; the report's figures if the record is older)."""
    data, trials = load_state(out)
    tune_errors_path = out / "tune_errors.json"
    tune_errors = json.loads(tune_errors_path.read_text()) if tune_errors_path.is_file() else {}
    records: dict[str, dict[str, Any]] = {}
    for t in trials:
        path = Path(t.dir) / TRIAL_FILE
        rec = json.loads(path.read_text()) if path.is_file() else {"status": "not run"}
        rep_path = Path(t.dir) / report_file(t.kind)
        if rec.get("status") == "done" and not rep_path.is_file():
            rec = {**rec, "status": "error", "error": f"{rep_path} is missing"}
        if t.name in tune_errors and rec.get("status") != "done":
            rec = {**rec, "status": "error", "error": rec.get("error") or tune_errors[t.name]}
        records[t.name] = rec
    return data, trials, records


def build_report(out: Path, sweep_wall_s: float | None = None) -> dict[str, Any]:
    data, trials, records = collect(out)
    metric, ref = data["metric"], data.get("reference")
    points: dict[str, dict[str, Any]] = {}
    for t in trials:
        p = points.setdefault(_point_key(t.point()), {"point": t.point(), "trials": []})
        p["trials"].append(t)
    rows = []
    for p in points.values():
        done = [t for t in p["trials"] if records[t.name].get("status") == "done"
                and records[t.name]["figures"].get(metric) is not None]
        figs = [records[t.name]["figures"] for t in done]
        row: dict[str, Any] = {"point": p["point"], "variant": p["point"]["variant"], "label": _label(p["point"]),
                               "n_trials": len(p["trials"]), "n_done": len(done)}
        vals = [f[metric] for f in figs]
        row["metric"] = metric
        row.update({k: v for k, v in summary(vals).items()})
        row["per_seed"] = {_replicate(t): f[metric] for t, f in zip(done, figs, strict=True)}
        for key in NUMERIC_FIGURES:
            xs = [f[key] for f in figs if isinstance(f.get(key), int | float)]
            if xs and key != metric:
                s = summary(xs)
                row[key], row[f"{key}_ci95"] = s["mean"], s["ci95"]
        if figs and figs[0].get("team") is not None:
            row["team_name"] = figs[0]["team"]
        for key in ("student_hidden", "student_labels", "student_flops", "student_params", "teacher_flops",
                    "budgets_met"):
            if figs and key in figs[0]:
                row[key] = figs[0][key]
        rows.append(row)
    if ref is not None:  # paired comparison of each point with the reference variant at the same other keys
        by_key = {_point_key(r_point(r)): r for r in rows}
        for row in rows:
            if row["variant"] == ref:
                continue
            ref_row = by_key.get(_point_key({**r_point(row), "variant": ref}))
            if ref_row is None:
                continue
            common = sorted(set(row["per_seed"]) & set(ref_row["per_seed"]))
            cmp = paired([row["per_seed"][k] for k in common], [ref_row["per_seed"][k] for k in common])
            row["vs_reference"] = {"reference": ref, "replicates": common, **cmp}
    failed = [{"trial": t.name, "variant": t.variant, "values": t.values, "status": records[t.name].get("status"),
               "attempt": records[t.name].get("attempt"), "error": records[t.name].get("error")}
              for t in trials if records[t.name].get("status") != "done"]
    walls = [records[t.name].get("wall_s") for t in trials if records[t.name].get("status") == "done"]
    rss = [records[t.name].get("peak_rss_mb") for t in trials if records[t.name].get("status") == "done"]
    report = {"sweep": str(out), "kind": data["kind"], "metric": metric, "reference": ref,
              "n_trials": len(trials), "done": len(trials) - len(failed), "failed": failed,
              "statistics": {
                  "interval": "mean +- t(0.975, n-1) * std(ddof=1) / sqrt(n) across replicates "
                              "(kdmarl_student.stats.ci95_half_width)",
                  "replicates": f"trials differing only in {list(REPLICATE_KEYS)} (teacher = index in the teacher "
                                "list)",
                  "paired_test": "two-sided paired t-test (scipy.stats.ttest_rel) on the replicates both points "
                                 "share",
                  "effect_size": "Cohen's d_z = mean(diff) / std(diff, ddof=1)",
                  "bootstrap": f"percentile 95 % interval of the mean difference over {BOOTSTRAP_RESAMPLES} "
                               f"resamples of the pairs (numpy default_rng({BOOTSTRAP_SEED}))"},
              "trial_wall_s": {"mean": sum(walls) / len(walls) if walls else None, "per_trial": walls},
              "worker_peak_rss_mb": max(rss) if rss else None, "points": rows,
              "trials": [{"trial": t.name, **t.point(), "replicate": _replicate(t),
                          "status": records[t.name].get("status"), "wall_s": records[t.name].get("wall_s"),
                          "dir": t.dir, metric: (records[t.name].get("figures") or {}).get(metric)} for t in trials]}
    if sweep_wall_s is not None:
        report["sweep_wall_s"] = sweep_wall_s
    elif (out / "sweep_report.json").is_file():  # --report later: keep the wall time the run measured
        old = json.loads((out / "sweep_report.json").read_text())
        if old.get("sweep_wall_s") is not None:
            report["sweep_wall_s"] = old["sweep_wall_s"]
    return report


def r_point(row: dict[str, Any]) -> dict[str, Any]:
    """A report row's grid point (variant and the grid values but the replicate keys)."""
    return row["point"]


def write_report(out: Path, sweep_wall_s: float | None = None) -> dict[str, Any]:
    """sweep_report.json, sweep_report.csv and the PNGs in the sweep directory."""
    out = Path(out)
    report = build_report(out, sweep_wall_s)
    _write_json(out / "sweep_report.json", report)
    point_keys = sorted({k for r in report["points"] for k in r_point(r)}, key=lambda k: (k != "variant", k))
    cols = [*point_keys, "n_done", "n_trials", "metric", "mean", "ci95", "std", "per_seed",
            "min_flops_reduction", "mean_diff", "p_value", "d_z", "boot_low", "boot_high", "verdict"]
    with (out / "sweep_report.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in report["points"]:
            cmp = r.get("vs_reference") or {}
            row = {**r, **r["point"], **{k: cmp.get(k) for k in ("mean_diff", "p_value", "d_z", "boot_low", "boot_high",
                                                    "verdict")}}
            row["per_seed"] = ";".join(f"{k}:{v:.6g}" for k, v in r["per_seed"].items())
            w.writerow(["" if row.get(c) is None else row.get(c) for c in cols])
        for f in report["failed"]:
            w.writerow([f"{'FAILED' if f['status'] == 'error' else 'NOT DONE'} {f['trial']}", f["status"],
                        f.get("error") or ""])
    report["figures"] = [str(p) for p in draw(report, out)]
    _write_json(out / "sweep_report.json", report)
    return report


def _label(point: dict[str, Any]) -> str:
    return ", ".join(f"{v}" if k == "variant" else f"{k}={_fmt(v)}" for k, v in point.items())


def draw(report: dict[str, Any], out: Path) -> list[Path]:
    """sweep_pareto.png (metric vs FLOPs reduction, error bars = 95 % interval across seeds) and sweep_bars.png
    (one bar per grid point, seeds as dots, the reference's interval shaded)."""
    from kdmarl_teacher.reports.common import FLOPS_TARGET, pyplot, save_figure  # noqa: PLC0415

    rows = [r for r in report["points"] if r["n"] > 0]
    if not rows:
        return []
    metric, paths = report["metric"], []
    plt = pyplot()
    if all(isinstance(r.get("min_flops_reduction"), int | float) for r in rows) and metric != "min_flops_reduction":
        fig, ax = plt.subplots(figsize=(8, 5))
        for r in rows:
            ax.errorbar([r["min_flops_reduction"]], [r["mean"]], yerr=[0 if math.isnan(r["ci95"]) else r["ci95"]],
                        fmt="o", capsize=3, label=f"{r['label']} (n={r['n']})")
        ax.axvline(FLOPS_TARGET, color="tab:green", ls="--", lw=1, label=f"{FLOPS_TARGET:.0f}x")
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs reduction vs teacher actor (min over agents, log scale)")
        ax.set_ylabel(f"{metric} (mean, 95 % interval across seeds)")
        ax.set_title(f"{Path(report['sweep']).name}: {metric} vs FLOPs reduction", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        paths.append(save_figure(fig, out / "sweep_pareto.png"))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 2), 5))
    xs = list(range(len(rows)))
    ref = report.get("reference")
    for x, r in zip(xs, rows, strict=True):
        color = "tab:orange" if r["variant"] == ref else "tab:blue"
        ax.bar(x, r["mean"], yerr=0 if math.isnan(r["ci95"]) else r["ci95"], capsize=4, color=color, alpha=0.8)
        seeds = list(r["per_seed"].values())
        ax.scatter([x] * len(seeds), seeds, color="black", s=10, zorder=3)
        cmp = r.get("vs_reference")
        if cmp and cmp.get("p_value") is not None and not math.isnan(cmp["p_value"]):
            ax.text(x, r["mean"], f"p={cmp['p_value']:.2g}\nd_z={cmp['d_z']:.2g}", ha="center", va="bottom",
                    fontsize=6)
    ax.set_xticks(xs)
    ax.set_xticklabels([r["label"] for r in rows], rotation=30, ha="right", fontsize=7)
    lo = min(min(r["per_seed"].values()) for r in rows)
    hi = max(max(r["per_seed"].values()) for r in rows)
    pad = 0.1 * (hi - lo or abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + 2 * pad)
    ax.set_ylabel(f"{metric} (bar: mean, error bar: 95 % interval; dots: seeds)")
    ax.set_title(f"{Path(report['sweep']).name}: {metric} per grid point"
                 + (f" (orange: reference {ref}; p: paired t-test vs reference)" if ref else ""), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(save_figure(fig, out / "sweep_bars.png"))
    return paths


def print_table(report: dict[str, Any]) -> None:
    metric = report["metric"]
    print(f"{'grid point':50s} {'n':>3s} {metric + ' mean':>14s} {'+-95%':>8s} {'diff':>8s} {'p':>8s} {'d_z':>6s}")
    for r in report["points"]:
        cmp = r.get("vs_reference") or {}

        def num(v: Any, f: str = ".4f") -> str:
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, f)

        print(f"{r['label'][:50]:50s} {r['n']:>3d} {num(r['mean']):>14s} {num(r['ci95']):>8s} "
              f"{num(cmp.get('mean_diff')):>8s} {num(cmp.get('p_value'), '.3g'):>8s} {num(cmp.get('d_z'), '.2f'):>6s}")
    for f in report["failed"]:  # every trial not done: an error (after its retry), or not run / still running
        if f["status"] == "error":
            print(f"FAILED {f['trial']} (attempt {f.get('attempt')}): {f.get('error')}")
        else:
            print(f"{str(f['status']).upper()} {f['trial']}")


# ------------------------------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", help="sweep spec YAML (optional with --resume and --report)")
    parser.add_argument("--out", help="sweep directory, e.g. runs/ablation (trials/, tune/, sweep_report.*)")
    parser.add_argument("--address", help="an existing Ray cluster (`ray start --head` prints it); default: a "
                                          "local Ray sized to this machine")
    parser.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep in --out; finished "
                                                              "trials are not recomputed, failed ones retried")
    parser.add_argument("--report", metavar="SWEEP_DIR", help="only aggregate SWEEP_DIR's trials (no Ray)")


def run(args: argparse.Namespace) -> int:
    if args.report:
        report = write_report(Path(args.report))
        print_table(report)
        print(f"wrote {Path(args.report) / 'sweep_report.json'}, sweep_report.csv and "
              f"{', '.join(Path(p).name for p in report['figures'])}")
        return 0
    if not args.out:
        raise ValueError("--out is required (the sweep directory)")
    if args.cpus is not None and args.cpus < 1:
        raise ValueError(f"--cpus must be >= 1, got {args.cpus}")
    report = run_sweep(args.spec, args.out, address=args.address, cpus=args.cpus, resume=args.resume)
    print_table(report)
    return 0 if not report["failed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kdmarl sweep", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
