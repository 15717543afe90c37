"""`kdmarl report` on distillation runs and on the benchmark results: real inputs in, valid PNGs out.

The run figures come from a real (tiny) teacher and a real very short `distill(...)` of a heterogeneous team; the
benchmark figures from JSON files written by `bench/benchlib.py:write_result` itself, so a format drift between
the benchmarks and the report shows up here. Bad or missing inputs must name the file (exit code 2, no traceback).
"""

from __future__ import annotations

import csv
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from kdmarl_teacher import cli

ROOT = Path(__file__).resolve().parents[3]
DPI = 110  # report._save


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; asserts the PNG signature first."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def distill_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real distillation run directory (distill_report.json, metrics.csv, students.pt) in a few seconds."""
    from kdmarl_teacher.algos.config import default_config_path, load_config
    from kdmarl_teacher.algos.mappo import train
    from kdmarl_teacher.algos.teacher import load_teacher
    from kdmarl_teacher.distill.config import DistillConfig
    from kdmarl_teacher.distill.loop import distill

    root = tmp_path_factory.mktemp("report")
    cfg = load_config(default_config_path("simple_spread"), [
        "num_envs=8", "total_steps=400", "actor_hidden=[8]", "critic_hidden=[8]", "torch_threads=1"])
    teacher_path = train(cfg, root / "teacher", progress=False)
    dcfg = DistillConfig(team="spread3_hetero", num_envs=16, num_steps=25, total_steps=16 * 25 * 3, eval_episodes=4,
                         torch_threads=1, checkpoint_every=10)
    distill(dcfg, load_teacher(teacher_path), root / "distill", teacher_path=teacher_path, progress=False)
    return root / "distill"


def test_distill_run_figures(distill_run: Path, tmp_path: Path) -> None:
    assert cli.main(["report", str(distill_run), "--out-dir", str(tmp_path)]) == 0
    assert png_size(tmp_path / "distill_agents.png") == (13 * DPI, round(4.8 * DPI))
    assert png_size(tmp_path / "distill_curves.png") == (12 * DPI, round(7.5 * DPI))
    # default: next to the run's own files; the same run draws the same figure
    assert cli.main(["report", str(distill_run)]) == 0
    assert (distill_run / "distill_curves.png").read_bytes() == (tmp_path / "distill_curves.png").read_bytes()
    # the curves are drawn from metrics.csv: other figures in it, another figure
    copy = tmp_path / "copy"
    shutil.copytree(distill_run, copy)
    metrics = (copy / "metrics.csv").read_text().splitlines()
    col = metrics[0].split(",").index("teacher_agreement")
    rows = [line.split(",") for line in metrics[1:]]
    for r in rows:
        r[col] = str(1.0 - float(r[col]))
    (copy / "metrics.csv").write_text("\n".join([metrics[0], *(",".join(r) for r in rows)]) + "\n")
    assert cli.main(["report", str(copy)]) == 0
    assert (copy / "distill_curves.png").read_bytes() != (tmp_path / "distill_curves.png").read_bytes()


def test_distill_run_figures_draw_the_run(distill_run: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """What is drawn, not only that a PNG exists: the bars are the report's per-agent FLOPs and parameters, the
    red marks students.pt's budgets, the tick labels name agent / sensing / board, the agreement panel is
    metrics.csv's teacher_agreement column, the return panel shows the teacher's evaluation and the retention."""
    from kdmarl_teacher.distill.students_file import read_students_payload
    from kdmarl_teacher.reports import distill as report_distill

    figures = []
    save = report_distill.save_figure
    monkeypatch.setattr(report_distill, "save_figure", lambda fig, out: (figures.append(fig), save(fig, out))[1])
    report_distill.draw_distill(distill_run, tmp_path)
    agents_fig, curves_fig = figures
    rep = json.loads((distill_run / "distill_report.json").read_text())
    hardware = [a["hardware"] for a in read_students_payload(distill_run)["agents"]]

    for ax, key, budget_key in zip(agents_fig.axes[:2], ("flops", "params"), ("max_flops", "max_params"), strict=True):
        assert [round(p.get_height()) for p in ax.patches] == [a[key] for a in rep["agents"]]
        marks = [seg[0][1] for c in ax.collections for seg in c.get_segments()]
        assert marks == [h[budget_key] for h in hardware if h.get(budget_key)]
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        for tick, a, h in zip(ticks, rep["agents"], hardware, strict=True):
            assert tick.split("\n")[:3] == [a["name"], a["sensing"]["name"], h["name"]]

    ret_ax, agree_ax = curves_fig.axes[0], curves_fig.axes[2]
    with (distill_run / "metrics.csv").open() as fh:
        agreement = [float(r["teacher_agreement"]) for r in csv.DictReader(fh)]
    assert list(agree_ax.get_lines()[0].get_ydata()) == agreement
    assert any(list(line.get_ydata()) == [rep["teacher_eval"]["team_return"]] * 2 for line in ret_ax.get_lines())
    assert f"retention {rep['retention']:.3f}" in ret_ax.get_title()


def test_distill_run_bad_inputs_name_the_file(distill_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "distill_report.json").write_text("{not json")
    assert cli.main(["report", str(broken)]) == 2
    assert f"{broken / 'distill_report.json'}: not valid JSON" in capsys.readouterr().err

    report = json.loads((distill_run / "distill_report.json").read_text())
    (broken / "distill_report.json").write_text(json.dumps(report))  # valid report, metrics.csv missing
    assert cli.main(["report", str(broken)]) == 2
    assert str(broken / "metrics.csv") in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def _bench_row(hidden: list[int], flops: int, retention: float) -> dict:
    return {"hidden": hidden, "flops": flops, "params": flops // 2, "flops_reduction": round(39424 / flops, 2),
            "retention": retention, "student_return": -8.0 - (1 - retention) * 18, "ci95": 0.5,
            "teacher_return": -8.11, "random_return": -26.47, "env_steps": 1_500_000, "train_minutes": 1.0}


def _ablation_row(variant: str, retention: float) -> dict:
    return {"variant": variant, "team": "spread3_full", "retention": retention, "student_return": -9.0,
            "student_ci95": 0.55, "teacher_return": -8.11, "random_return": -26.47, "min_flops_reduction": 31.59,
            "student_hidden": [[16, 16]] * 3, "env_steps": 1_500_000, "train_minutes": 1.0}


@pytest.fixture()
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Small result files written by the real write_result, redirected to a temporary directory."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import benchlib

    out = tmp_path / "results"
    monkeypatch.setattr(benchlib, "RESULTS_DIR", out)
    monkeypatch.setattr(sys, "argv", ["bench_test.py"])
    benchlib.write_result("distill_ladder", title="ladder", columns=["hidden"], rows=[
        _bench_row([4], 184, 0.77), _bench_row([16, 16], 1248, 0.96), _bench_row([128, 128], 38656, 0.99),
        {"hidden": [8, 8], "error": "RuntimeError: boom"}])
    variants = [("kdmarl_full", 0.96), ("kl_only", 0.957), ("minus_pg", 0.958), ("resource_aware", 0.89)]
    benchlib.write_result("distill_ablation", title="ablation", columns=["variant"],
                          rows=[_ablation_row(v, r) for v, r in variants] + [
                              {"variant": "minus_kl", "team": "spread3_full", "error": "ValueError: x"}])
    # a baseline present only in distill.json is merged in; its kdmarl_full row does not replace the ablation's
    benchlib.write_result("distill", title="main", columns=["variant"],
                          rows=[_ablation_row("kdmarl_full", 0.5)],
                          extra={"ablation_rows": [_ablation_row("mappo_scratch", 0.45)]})
    return out


def test_bench_figures(bench_dir: Path, tmp_path: Path) -> None:
    from kdmarl_teacher.reports.bench import ablation_rows

    out = tmp_path / "docs"
    assert cli.main(["report", "--bench", str(bench_dir), "--out-dir", str(out)]) == 0
    assert png_size(out / "distill_pareto.png") == (8 * DPI, 5 * DPI)
    rows = ablation_rows(bench_dir)
    assert [r["variant"] for r in rows] == ["kdmarl_full", "kl_only", "mappo_scratch", "minus_pg", "minus_kl",
                                            "resource_aware"]
    assert rows[0]["retention"] == 0.96
    assert png_size(out / "distill_ablation.png") == (12 * DPI, round((0.45 * len(rows) + 2.2) * DPI))


def test_report_does_not_import_torch(bench_dir: Path, tmp_path: Path) -> None:
    """`kdmarl report` is documented as torch-free: the teacher curve and the bench figures, in a fresh interpreter."""
    teacher = tmp_path / "teacher_run"
    teacher.mkdir()
    (teacher / "metrics.csv").write_text("iteration,global_step,wall_time,train_return\n1,100,1.0,-30\n2,200,2.0,-20\n")
    (teacher / "config.yaml").write_text("scenario: simple_spread\nenv_params: {}\n")
    code = ("import sys; from kdmarl_teacher import cli; "
            f"assert cli.main(['report', {str(teacher)!r}]) == 0; "
            f"assert cli.main(['report', '--bench', {str(bench_dir)!r}, '--out-dir', "
            f"{str(tmp_path / 'docs')!r}]) == 0; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
    assert png_size(teacher / "learning_curve.png") == (11 * DPI, 4 * DPI)
    assert png_size(tmp_path / "docs" / "distill_pareto.png") == (8 * DPI, 5 * DPI)


def test_bench_bad_inputs_name_the_file(bench_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ladder = bench_dir / "distill_ladder.json"
    data = json.loads(ladder.read_text())
    del data["rows"][1]["retention"]
    ladder.write_text(json.dumps(data))
    assert cli.main(["report", "--bench", str(bench_dir), "--out-dir", str(tmp_path)]) == 2
    assert f"{ladder}: rows[1] has no field 'retention'" in capsys.readouterr().err

    ladder.unlink()
    assert cli.main(["report", "--bench", str(bench_dir), "--out-dir", str(tmp_path)]) == 2
    assert f"{ladder}: no such file" in capsys.readouterr().err
    assert cli.main(["report"]) == 2
    assert "give a run directory or --bench" in capsys.readouterr().err


def test_bench_ladder_forces_each_rung(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_ladder's inline budgets make load_team (as distill calls it) pick exactly the requested rung."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from bench_ladder import DEFAULT_RUNGS, write_rung_team
    from kdmarl_teacher.distill.profiles import load_team

    for hidden in DEFAULT_RUNGS:
        team = load_team(write_rung_team(hidden, tmp_path), max_flops=39424)  # the -8.11 teacher's actor FLOPs
        assert {tuple(a.rung.hidden) for a in team.agents} == {hidden}
    with pytest.raises(ValueError, match="not a rung"):
        write_rung_team((5, 5), tmp_path)
