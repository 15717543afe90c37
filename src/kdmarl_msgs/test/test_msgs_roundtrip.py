"""Each kdmarl interface is published by one process and received intact by another over DDS."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from kdmarl_msgs.msg import AgentAction, AgentObservation, EpisodeSummary, FleetStop, ResourceUsage  # noqa: E402

# The publisher process fills every message with recognisable values; the test checks them field by field.
PUBLISHER = textwrap.dedent(
    """
    import time
    import rclpy
    from kdmarl_msgs.msg import AgentAction, AgentObservation, EpisodeSummary, FleetStop, ResourceUsage

    rclpy.init()
    node = rclpy.create_node("roundtrip_publisher")
    obs = AgentObservation(agent="agent_0", episode=3, step=7, data=[0.5, -1.25, 2.0])
    obs.header.frame_id = "world"
    act = AgentAction(agent="agent_0", episode=3, step=7, action=4, is_safe_action=True, inference_ms=0.25)
    act.observation_stamp.sec = 12
    use = ResourceUsage(agent="agent_0", node_name="student", latency_p50_ms=0.05, latency_p99_ms=0.2,
                        cpu_percent=12.5, rss_bytes=60_000_000, flops_per_decision=4_352, params=2_245,
                        budget_name="mcu", budget_flops=10_000, budget_met=True, actions=99,
                        stale_observations=2)
    ep = EpisodeSummary(scenario="simple_spread", episode=3, seed=1003, steps=25, agents=["a", "b"],
                        agent_returns=[-7.5, -8.5], missed_actions=[0, 1], team_return=-8.0,
                        metric_names=["landmarks_covered"], metric_values=[3.0])
    stop = FleetStop(stop=True, who="operator", why="person in the arena")
    stop.header.stamp.sec = 1700000000
    pubs = [(node.create_publisher(type(m), f"/roundtrip/{type(m).__name__}", 10), m)
            for m in (obs, act, use, ep, stop)]
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        for pub, msg in pubs:
            pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.05)
    """
)


def test_every_interface_crosses_processes() -> None:
    env = dict(os.environ, ROS_DOMAIN_ID=str(40 + os.getpid() % 50))
    os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER], env=env)
    received: dict[str, object] = {}
    rclpy.init()
    try:
        node = rclpy.create_node("roundtrip_subscriber")
        for msg_type in (AgentObservation, AgentAction, ResourceUsage, EpisodeSummary, FleetStop):
            name = msg_type.__name__
            node.create_subscription(msg_type, f"/roundtrip/{name}", lambda m, n=name: received.setdefault(n, m), 10)
        deadline = time.monotonic() + 25.0
        while len(received) < 5 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            assert publisher.poll() is None, "publisher process died"
    finally:
        publisher.kill()
        publisher.wait()
        rclpy.shutdown()

    assert set(received) == {"AgentObservation", "AgentAction", "ResourceUsage", "EpisodeSummary", "FleetStop"}
    obs, act = received["AgentObservation"], received["AgentAction"]
    use, ep = received["ResourceUsage"], received["EpisodeSummary"]
    assert (obs.agent, obs.episode, obs.step, obs.header.frame_id) == ("agent_0", 3, 7, "world")
    assert list(obs.data) == [0.5, -1.25, 2.0]
    assert (act.action, act.is_safe_action, act.observation_stamp.sec) == (4, True, 12)
    assert act.inference_ms == pytest.approx(0.25)
    assert (use.flops_per_decision, use.params, use.budget_name, use.budget_met) == (4_352, 2_245, "mcu", True)
    assert (use.rss_bytes, use.actions, use.stale_observations) == (60_000_000, 99, 2)
    assert (ep.scenario, ep.seed, ep.steps, list(ep.agents)) == ("simple_spread", 1003, 25, ["a", "b"])
    assert list(ep.agent_returns) == [-7.5, -8.5] and list(ep.missed_actions) == [0, 1]
    assert ep.team_return == -8.0 and list(ep.metric_values) == [3.0]
    stop = received["FleetStop"]
    assert (stop.stop, stop.who, stop.why) == (True, "operator", "person in the arena")
    assert stop.header.stamp.sec == 1700000000
