"""The simulation bridge's episodes: lockstep and realtime loops, stepping, and the per-episode tally.

:class:`Stepping` is a mixin of :class:`kdmarl_bringup.sim_bridge.SimBridge`, which owns the node, its parameters,
topics and the decider checks; this module holds what happens in an episode (see the bridge's module docstring for
the semantics of both modes). Every step goes through :meth:`Stepping._advance`, which refuses to step with a
second decider, and on SMAX replaces actions the step's mask forbids by the safe action.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from kdmarl_student.lifetime import shutdown_requested
from rclpy import ok as rclpy_ok
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Header

from kdmarl_msgs.msg import EpisodeSummary


def running() -> bool:
    """The bridge's loops go on while the context lives and no stop was requested."""
    return rclpy_ok() and not shutdown_requested()


@dataclass
class EpisodeTally:
    """What the bridge accumulates over one episode: the figures of its EpisodeSummary."""

    returns: np.ndarray  # [N] summed reward per agent
    misses: np.ndarray  # [N] steps where the agent's action did not arrive in time
    collisions: float = 0.0
    steps: int = 0

    @classmethod
    def start(cls, n_agents: int) -> EpisodeTally:
        return cls(np.zeros(n_agents), np.zeros(n_agents, dtype=np.int64))




class Stepping:
    """The episode loops of :class:`~kdmarl_bringup.sim_bridge.SimBridge` (a mixin: it uses the node's state)."""

    def _collect_actions(self, deadline: float, republish: float, obs: dict[str, np.ndarray]) -> list[str]:
        """Lockstep: spin until every agent answered the current step or the deadline; return who missed."""
        next_send = time.perf_counter() + republish
        while running():
            pending = [a for a in self.agents if a not in self.answers]
            now = time.perf_counter()
            if not pending or now >= deadline:
                return pending
            if now >= next_send:
                self._publish_observations(obs, pending)
                next_send = now + republish
            self._spin_for(min(deadline, next_send) - now)
            self._publish_diagnostics()
        return [a for a in self.agents if a not in self.answers]

    def _episode_releases(self) -> tuple[list[int], bool]:
        """Per agent the release of its policy actions this episode (0: none), and whether they mixed releases."""
        sets = [self.release_sets.get(a, set()) for a in self.all_agents]
        mixed = len(set().union(*sets)) > 1
        if mixed:
            self.mixed_episodes += 1
            self.get_logger().error(f"episode {self.episode} mixed releases: " + ", ".join(
                f"{a} {sorted(r)}" for a, r in zip(self.all_agents, sets, strict=True) if r))
        return [max(r) if r else 0 for r in sets], mixed

    def _finish_episode(self, seed: int, tally: EpisodeTally) -> None:
        releases, mixed = self._episode_releases()
        metrics = self.sim.episode_metrics()
        if "collisions" in metrics:
            metrics["collisions"] = float(tally.collisions)
        steps, returns, misses = tally.steps, tally.returns, tally.misses
        team = float(np.mean(returns))
        msg = EpisodeSummary(scenario=self.spec.name, episode=self.episode, seed=seed, steps=steps,
                             agents=self.all_agents, agent_returns=[float(r) for r in returns],
                             missed_actions=[int(m) for m in misses], team_return=team,
                             metric_names=list(metrics), metric_values=list(metrics.values()),
                             releases=releases, mixed_releases=mixed)
        msg.header = Header(stamp=self.get_clock().now().to_msg())
        self.episode_pub.publish(msg)
        self.summaries.append({"episode": self.episode, "seed": seed, "steps": steps, "team_return": team,
                               "agent_returns": [float(r) for r in returns],
                               "missed_actions": [int(m) for m in misses], "metrics": metrics,
                               "releases": releases, "mixed_releases": mixed})
        self.get_logger().info(f"episode {self.episode} seed {seed}: team return {team:.6f}, "
                               f"misses {int(misses.sum())}")

    # ---- the loops ---------------------------------------------------------------------------------
    def run(self) -> None:
        episodes = int(self.get_parameter("episodes").value)
        seed0 = int(self.get_parameter("seed").value)
        self._wait_for_discovery()
        k = 0
        while running() and (episodes == 0 or k < episodes):
            self.episode = k
            if self.mode == "lockstep":
                self._run_lockstep_episode(seed0 + k, first=(k == 0))
            else:
                self._run_realtime_episode(seed0 + k)
            k += 1
        self._publish_diagnostics(force=True)

    def _advance(self, actions: dict[str, int], tally: EpisodeTally) -> tuple[dict[str, np.ndarray], bool]:
        """Step the env with one action per agent, account the step in ``tally``; (observations, done).

        Never with the actions of two deciders: a second writer seen on an action topic stops the run here."""
        self._raise_if_second_decider()
        self._forget_old_steps()
        if self.masks is not None:  # SMAX: the simulator only ever takes an available action
            actions = {agent: self._available_or_safe(agent, action) for agent, action in actions.items()}
        obs, rewards, done = self.sim.step(actions)
        self.masks = self.sim.masks()
        self.total_steps += 1
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=self._sim_stamp()))
        tally.returns += np.array([rewards.get(a, 0.0) for a in self.all_agents], dtype=np.float64)
        tally.collisions += self.sim.step_metrics().get("collisions", 0.0)
        tally.steps += 1
        self._publish_diagnostics()
        return obs, done

    def _available_or_safe(self, agent: str, action: int) -> int:
        """``action`` if the step's mask allows it, else the agent's safe action (counted and warned).

        Realtime: the latest answer may be an earlier step's (attack a unit now dead or out of range);
        lockstep: only a student that ignores the published mask gets here."""
        assert self.masks is not None
        if self.masks[agent][action]:
            return action
        self.unavailable_actions += 1
        self.get_logger().warning(
            f"{self.topics.get(agent, agent)}/action: action {action} is not available at step {self.step_index} "
            f"of episode {self.episode}; stepped with the safe action {self.noop[agent]}", throttle_duration_sec=5.0)
        return self.noop[agent]

    def _steps(self) -> Any:
        """Step indices of one episode: up to the simulator's step limit, or until its ``done`` (SMAX)."""
        limit = self.sim.step_limit
        return itertools.count() if limit is None else range(limit)

    def _reset(self, seed: int) -> dict[str, np.ndarray]:
        """Start an episode: one decider per action topic (checked on the graph before step 0 goes out), then the
        simulator's reset."""
        self._check_single_deciders()
        self.writers = {}
        self.release_sets = {}  # agent -> releases of its policy actions this episode (AgentAction.release)
        obs = self.sim.reset(seed)
        self.masks = self.sim.masks()
        return obs

    def _run_lockstep_episode(self, seed: int, first: bool) -> None:
        obs = self._reset(seed)
        tally = EpisodeTally.start(len(self.all_agents))
        timeout = float(self.get_parameter("action_timeout_s").value)
        republish = float(self.get_parameter("republish_period_s").value)
        handshake = float(self.get_parameter("wait_for_students_s").value)
        for t in self._steps():
            self.step_index, self.answers = t, {}
            loop_start = time.perf_counter()
            self.sent_at[(self.episode, t)] = loop_start
            self._publish_observations(obs, self.agents)
            wait = (handshake if handshake > 0 else 1e9) if first and t == 0 else timeout
            missed = self._collect_actions(loop_start + wait, republish, obs)
            if not running():
                return
            actions = {a: self.answers.get(a, self.noop[a]) for a in self.all_agents}
            for i, a in enumerate(self.all_agents):
                if a not in self.answers:
                    tally.misses[i] += 1
            self.total_misses += len(missed) + len(set(self.all_agents) - set(self.agents))
            obs, done = self._advance(actions, tally)
            if not (first and t == 0):  # the handshake step is start-up, not throughput
                self.stepping_time += time.perf_counter() - loop_start
                self.timed_steps += 1
            if done:
                break
        self._finish_episode(seed, tally)

    def _run_realtime_episode(self, seed: int) -> None:
        obs = self._reset(seed)
        tally = EpisodeTally.start(len(self.all_agents))
        period = 1.0 / float(self.get_parameter("rate_hz").value)
        timeout = float(self.get_parameter("action_timeout_s").value)
        self.step_index, self.answers = 0, {}
        next_tick = time.perf_counter()
        for t in self._steps():
            self.step_index, self.answers = t, {}
            self.sent_at[(self.episode, t)] = time.perf_counter()
            self._publish_observations(obs, self.agents)
            next_tick += period
            while running() and time.perf_counter() < next_tick:
                self._spin_for(next_tick - time.perf_counter())
            if not running():
                return
            now = time.perf_counter()
            actions = {}
            for i, a in enumerate(self.all_agents):
                latest = self.latest.get(a)
                fresh = latest is not None and now - latest[3] <= timeout
                actions[a] = latest[2] if fresh else self.noop[a]
                if a not in self.answers:  # no answer to this tick's observation before the deadline
                    tally.misses[i] += 1
                    self.total_misses += 1
            obs, done = self._advance(actions, tally)
            if done:
                break
        self._finish_episode(seed, tally)


__all__ = ["EpisodeTally", "Stepping", "running"]
