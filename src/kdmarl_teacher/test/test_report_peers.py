"""The side-by-side peer benchmark's reading, comparison and figure (`reports.peers`, `bench/bench_peers.py`).

The peer CSVs under test/data were written by the JaxMARL drivers of ../shared/peers/jaxmarl themselves
(`peer_qmix_quick.csv`: `run_qmix.py 2e5` whole; `peer_mappo_3m_head.csv`: the first rows of a `run_mappo.py 3m
3e6` run), and our side is a real tiny QMIX run, so a format drift on either side shows up here. The peer run
itself (minutes of jax) belongs in the benchmark, not in a test.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from kdmarl_teacher.reports.peers import (
    Curve,
    ahead_at_every_time,
    first_time,
    read_ours,
    read_peer_mappo,
    read_peer_qmix,
    steps_per_reading,
    value_at,
)

ROOT = Path(__file__).resolve().parents[3]
DATA = Path(__file__).resolve().parent / "data"
PEER_QMIX = DATA / "peer_qmix_quick.csv"
PEER_MAPPO = DATA / "peer_mappo_3m_head.csv"


@pytest.fixture(scope="module")
def ours_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny QMIX run with greedy evaluations every 2 iterations (metrics.csv greedy_return)."""
    from kdmarl_teacher.algos.config import load_qmix_config
    from kdmarl_teacher.algos.qmix import train

    out = tmp_path_factory.mktemp("qmix")
    cfg = load_qmix_config(None, ["num_envs=8", "num_steps=25", "total_steps=2000", "agent_hidden=[16,16]",
                                  "mixer_embed=8", "hypernet_hidden=16", "batch_size=4", "learning_starts=400",
                                  "buffer_size=16", "eval_every=2", "eval_envs=4", "eps_anneal_steps=800"])
    train(cfg, out, progress=False)
    return out


def test_peer_qmix_csv_is_the_team_return_per_agent() -> None:
    with PEER_QMIX.open() as fh:
        raw = list(csv.DictReader(fh))
    curve = read_peer_qmix(PEER_QMIX, 3, "peer")
    assert len(curve.value) == len(raw) > 2
    assert curve.value[-1] == pytest.approx(float(raw[-1]["test_returned_episode_returns"]) / 3)
    assert curve.minutes[-1] == pytest.approx(float(raw[-1]["wall_s_since_train_start"]) / 60)
    assert curve.env_steps == sorted(curve.env_steps) and curve.who == "peer"
    # a trained 2e5-step peer is better than its untrained first test, which is the random policy's level
    assert curve.value[-1] > curve.value[0]


def test_peer_mappo_csv_and_first_time() -> None:
    curve = read_peer_mappo(PEER_MAPPO, "peer")
    assert curve.metric == "training win rate" and 0.0 <= min(curve.value) <= max(curve.value) <= 1.0
    level = max(curve.value)
    t = first_time(curve, level)
    assert t == curve.minutes[curve.value.index(level)]
    assert first_time(curve, 1.01) is None


def test_ours_skips_iterations_without_an_evaluation(ours_run: Path) -> None:
    with (ours_run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    curve = read_ours(ours_run / "metrics.csv", "greedy_return", "ours", "greedy team return")
    evaluated = [r for r in rows if r["greedy_return"] not in ("", "nan")]
    assert 0 < len(curve.value) == len(evaluated) < len(rows)
    assert curve.env_steps == [int(r["global_step"]) for r in evaluated]


def test_our_win_rate_is_read_over_one_peer_update_of_play(tmp_path: Path) -> None:
    """Our training win rate per iteration averages that iteration's battles only; against the peer it is read
    over the trailing iterations that make up one peer update's env steps, weighted by battles, so a config with
    fewer envs per iteration does not reach a level early by chance."""
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("iteration,global_step,wall_time,episodes,task/won\n"
                       "1,2048,6,10,1.0\n2,4096,12,30,0.5\n3,6144,18,0,\n4,8192,24,10,0.0\n5,10240,30,50,1.0\n")
    raw = read_ours(metrics, "task/won", "ours", "training win rate")
    assert raw.value == [1.0, 0.5, 0.0, 1.0] and raw.env_steps == [2048, 4096, 8192, 10240]
    peer = read_peer_mappo(PEER_MAPPO, "peer")
    assert steps_per_reading(peer) == 16384  # JaxMARL's 3m config: 128 envs x 128 steps per update
    read = read_ours(metrics, "task/won", "ours", "training win rate", window_steps=4096)
    # each reading covers the last 4096 env steps: iteration 2 with 1 (10 + 30 battles); iteration 4 with 3, which
    # finished none (its row is skipped); iteration 5 with 4
    assert read.value == pytest.approx([1.0, (10 + 15) / 40, 0.0, (0 + 50) / 60])
    assert read.env_steps == raw.env_steps and read.minutes == raw.minutes
    with pytest.raises(ValueError, match="episodes"):
        (tmp_path / "bare.csv").write_text("global_step,wall_time,task/won\n2048,6,1.0\n")
        read_ours(tmp_path / "bare.csv", "task/won", "ours", "training win rate", window_steps=4096)


def test_value_at_is_a_step_function_and_ahead_compares_at_the_peer_points() -> None:
    peer = read_peer_qmix(PEER_QMIX, 3, "peer")
    assert value_at(peer, -1.0) is None
    assert value_at(peer, peer.minutes[-1] + 5) == peer.value[-1]  # past its end: its last figure
    mid = len(peer.value) // 2
    assert value_at(peer, (peer.minutes[mid] + peer.minutes[mid + 1]) / 2) == peer.value[mid]
    same = ahead_at_every_time(peer, peer)
    assert same["compared"] > 0 and same["behind"] == 0 and same["worst_margin"] == 0
    assert same["at_peer_end"]["minutes"] == pytest.approx(peer.minutes[-1], abs=1e-3)
    better = Curve("ours", "ours", peer.metric, list(peer.minutes), list(peer.env_steps), [v + 1 for v in peer.value])
    worse = Curve("ours", "ours", peer.metric, list(peer.minutes), list(peer.env_steps),
                  [v + (0.5 if i < mid else -0.5) for i, v in enumerate(peer.value)])
    assert ahead_at_every_time(better, peer)["behind"] == 0
    res = ahead_at_every_time(worse, peer)
    assert res["behind"] > 0 and res["worst_margin"] == pytest.approx(-0.5)
    assert res["first_behind"]["minutes"] >= round(peer.minutes[mid], 3)


def test_a_last_line_cut_by_the_stop_is_dropped(tmp_path: Path) -> None:
    text = PEER_MAPPO.read_text()
    cut = tmp_path / "peer.csv"
    cut.write_text(text + "20,344064,9")  # the driver was stopped while writing a row
    assert read_peer_mappo(cut, "peer").value == read_peer_mappo(PEER_MAPPO, "peer").value


def test_bad_peer_csv_names_file_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "peer.csv"
    bad.write_text("update,env_steps,wall_s_since_train_start\n1,100,1.0\n")
    with pytest.raises(ValueError, match=r"peer\.csv: missing column\(s\) \['win_rate'\]"):
        read_peer_mappo(bad, "peer")
    bad.write_text("update,env_steps,wall_s_since_train_start,win_rate\n1,100,1.0,oops\n")
    with pytest.raises(ValueError, match=r"peer\.csv: line 2: column 'win_rate' = 'oops' is not a number"):
        read_peer_mappo(bad, "peer")


def test_result_json_round_trips_into_the_figure(ours_run: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The curves as bench_peers writes them (real write_result), drawn by `kdmarl report --bench`."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import benchlib
    from kdmarl_teacher.reports.peers import draw_peers

    results = tmp_path / "results"
    monkeypatch.setattr(benchlib, "RESULTS_DIR", results)
    monkeypatch.setattr(sys, "argv", ["bench_peers.py", "qmix_spread"])
    ours = read_ours(ours_run / "metrics.csv", "greedy_return", "ours", "greedy team return")
    peer = read_peer_qmix(PEER_QMIX, 3, "peer")
    path = benchlib.write_result("peers_qmix_spread", title="ours vs peer", columns=["who"],
                                 rows=[{"who": "ours"}, {"who": "peer"}],
                                 extra={"curves": [ours.to_dict(), peer.to_dict(max_points=5)],
                                        "levels": [(-9.0, "target")], "caption": "same run"})
    stored = json.loads(path.read_text())["curves"]
    back = Curve.from_dict(stored[1])
    assert len(back.value) == 5 and back.value[0] == peer.value[0] and back.value[-1] == peer.value[-1]
    assert Curve.from_dict(stored[0]).value == ours.value
    out = draw_peers(path, tmp_path / "peers.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored_bad = json.loads(path.read_text())
    del stored_bad["curves"][0]["value"]
    (tmp_path / "bad.json").write_text(json.dumps(stored_bad))
    with pytest.raises(ValueError, match=r"bad\.json: curves\[0\]: missing field\(s\) \['value'\]"):
        draw_peers(tmp_path / "bad.json", tmp_path / "bad.png")


def test_bench_without_the_peer_venv_says_how_to_create_it(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_peers.py"), "smax_3m", "--peer-venv",
                          str(tmp_path / "no_venv")], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    assert f"setup_venv.sh {tmp_path / 'no_venv'}" in res.stderr
