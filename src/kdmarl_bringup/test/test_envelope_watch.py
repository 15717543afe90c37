"""The monitor's envelope watch (issue 25): a live swarm outside its envelope gets a WARN on /diagnostics.

The bundle is the trained spread3 team with its envelope measured here (real mpe2, ONNX Runtime) and its
control rate set to 10 Hz (MPE's dt), so a control period is 100 ms. Three real student processes and the real
monitor run over DDS; the test feeds the students real mpe2 observations, first fresh, then stamped 450 ms in
the past (a slow sensor pipeline: 4.5 control periods, beyond the 3 the envelope measured).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from kdmarl_bringup.envelope_watch import OK, WARN, EnvelopeWatch, LiveAgent, live_from_values
from kdmarl_student.manifest import dump_manifest, load_manifest, oldest_schema_version
from kdmarl_student.perturbation import Perturbation
from kdmarl_student.scenarios import make_mpe2_env, scenario_spec
from kdmarl_student.team_profile import measure_envelope

SPREAD3 = Path(__file__).resolve().parent / "data" / "spread3"
AGENTS = ("agent_0", "agent_1", "agent_2")
GRID = [Perturbation(), *(Perturbation("action_delay", k=k) for k in (1, 2, 3)),
        *(Perturbation("obs_drop", p=p) for p in (0.1, 0.3)), Perturbation("teammate_gone", from_step=5)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("envelope") / "spread3"
    shutil.copytree(SPREAD3, out)
    data = copy.deepcopy(load_manifest(out).data)
    for agent in data["agents"]:
        agent["control_rate_hz"] = 10.0
    (out / "manifest.json").write_bytes(dump_manifest(data))
    data["envelope"] = measure_envelope(out, range(1000, 1010), grid=GRID)
    data["schema_version"] = oldest_schema_version(data)
    (out / "manifest.json").write_bytes(dump_manifest(data))
    return out


def test_watch_verdicts_follow_the_envelope(bundle: Path) -> None:
    data = load_manifest(bundle).data
    watch = EnvelopeWatch(data, bundle, min_retention=0.0)
    fresh = {a: LiveAgent(delay_ms=5.0, latency_p99_ms=0.1, drop_rate=0.0) for a in AGENTS}
    level, message, values = watch.check(fresh)
    assert level == OK and "inside" in message and values["agent_0.delay_periods"] == pytest.approx(0.051)
    late = {**fresh, "agent_1": LiveAgent(delay_ms=450.0, latency_p99_ms=0.1)}
    level, message, _ = watch.check(late)
    assert level == WARN and "agent_1: observation delay + decision latency 4.5 control periods > the 3 measured" \
        in message and str(bundle / "envelope.png") in message
    level, message, _ = watch.check({**fresh, "agent_2": LiveAgent(drop_rate=0.5)})
    assert level == WARN and "agent_2: dropped observations 0.5" in message
    level, message, _ = watch.check({"agent_0": fresh["agent_0"]})
    assert level == WARN and "2 agents missing (agent_1, agent_2)" in message
    one_gone = {a: fresh[a] for a in AGENTS[:2]}
    strict = EnvelopeWatch(data, bundle, min_retention=0.99)  # a gone teammate costs more than 1 %
    assert watch.check(one_gone)[0] == OK and strict.check(one_gone)[0] == WARN
    # inside the measured range, the interpolated retention decides
    k2 = {**fresh, "agent_0": LiveAgent(delay_ms=200.0)}
    at_k2 = next(c["student_retention"] for c in data["envelope"]["cells"]
                 if c["perturbation"] == {"kind": "action_delay", "k": 2})
    assert EnvelopeWatch(data, bundle, min_retention=at_k2 - 0.01).check(k2)[0] == OK
    assert EnvelopeWatch(data, bundle, min_retention=at_k2 + 0.01).check(k2)[0] == WARN
    assert live_from_values({"observation_delay_ms": "12.5", "inference_p99_ms": "0.2", "actions": "90",
                             "stale_observations": "10"}) == LiveAgent(12.5, 0.2, 0.1)
    no_envelope = copy.deepcopy(data)
    del no_envelope["envelope"]
    assert EnvelopeWatch(no_envelope, bundle).check(late)[0] == OK


def test_live_swarm_outside_its_envelope_gets_the_monitors_warn(bundle: Path, processes, ros_node) -> None:
    pytest.importorskip("rclpy")
    from conftest import spin_until
    from diagnostic_msgs.msg import DiagnosticArray
    from kdmarl_student.ros_support import OBSERVATION_QOS, REPORT_QOS
    from rclpy.duration import Duration

    from kdmarl_msgs.msg import AgentObservation

    for agent in AGENTS:
        processes.start(f"student_{agent}", "kdmarl_student.student_node", params={"bundle": str(bundle)},
                        ros_args=["-r", f"__ns:=/{agent}"])
    processes.start("monitor", "kdmarl_bringup.monitor", params={
        "bundle": str(bundle), "log_dir": str(processes.log_dir / "monitor"),
        "envelope_min_retention": 0.5, "envelope_grace_s": 30.0})
    verdicts: list[tuple[int, str]] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        verdicts.extend((s.level[0] if isinstance(s.level, bytes) else int(s.level), s.message)
                        for s in msg.status if s.name == "kdmarl_monitor: envelope")

    ros_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, REPORT_QOS)
    pubs = {a: ros_node.create_publisher(AgentObservation, f"/{a}/observation", OBSERVATION_QOS) for a in AGENTS}
    env = make_mpe2_env(scenario_spec("simple_spread", **load_manifest(bundle).scenario["params"]))
    observations, _ = env.reset(seed=1000)
    step = [0]
    age = [Duration(seconds=0.0)]

    def publish() -> None:
        step[0] += 1
        stamp = (ros_node.get_clock().now() - age[0]).to_msg()
        for agent, pub in pubs.items():
            msg = AgentObservation(agent=agent, episode=1, step=step[0],
                                   data=np.asarray(observations[agent], dtype=np.float32).tolist())
            msg.header.stamp = stamp
            pub.publish(msg)

    ros_node.create_timer(0.1, publish)
    alive = (*(f"student_{a}" for a in AGENTS), "monitor")
    # fresh observations: inside the envelope (every agent heard, delay ~0 periods)
    assert spin_until(ros_node, lambda: any(level == OK and "inside" in m for level, m in verdicts), 90.0,
                      processes, alive=alive), (verdicts[-3:], processes.logs())
    # observations 450 ms old: 4.5 control periods > the 3 measured -> WARN naming the condition and the figure
    age[0] = Duration(seconds=0.45)
    start = len(verdicts)
    assert spin_until(ros_node, lambda: any(lvl == WARN and "observation delay" in m for lvl, m in verdicts[start:]),
                      60.0, processes, alive=alive), (verdicts[-3:], processes.logs())
    message = next(m for level, m in verdicts[start:] if level == WARN)
    assert "> the 3 measured (outside the envelope)" in message and str(bundle / "envelope.png") in message
    assert json.dumps(message)  # one line a log or rqt shows as is
