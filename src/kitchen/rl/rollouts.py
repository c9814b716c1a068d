"""Sampling trajectories from env groups through a SamplingClient, and turning them into
Datums for ``importance_sampling`` / ``ppo``.

Rollouts are plain data (:class:`Trajectory` serialises to JSON), so a batch sampled ahead
of time can be stored in checkpointed run state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kitchen.ports.sampling import SamplingClient
from kitchen.ports.types import Datum, ModelInput, SamplingParams, TensorData
from kitchen.rl.env import Env, EnvGroupBuilder


@dataclass
class Transition:
    observation: list[int]
    action: list[int]
    #: Sampler logprobs of ``action`` (the behaviour policy, for the importance ratio).
    logprobs: list[float]
    reward: float
    done: bool
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Trajectory:
    transitions: list[Transition]
    #: Filled in after sampling when a KL penalty is used: reference logprobs of the actions.
    ref_logprobs: list[list[float]] | None = None

    @property
    def total_reward(self) -> float:
        return sum(t.reward for t in self.transitions)

    @property
    def num_action_tokens(self) -> int:
        return sum(len(t.action) for t in self.transitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "transitions": [
                {
                    "observation": t.observation,
                    "action": t.action,
                    "logprobs": t.logprobs,
                    "reward": t.reward,
                    "done": t.done,
                    "metrics": t.metrics,
                }
                for t in self.transitions
            ],
            "ref_logprobs": self.ref_logprobs,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Trajectory:
        return cls(
            [
                Transition(
                    list(t["observation"]),
                    list(t["action"]),
                    list(t["logprobs"]),
                    float(t["reward"]),
                    bool(t["done"]),
                    dict(t.get("metrics") or {}),
                )
                for t in obj["transitions"]
            ],
            obj.get("ref_logprobs"),
        )


def _seed(base: int, *parts: int) -> int:
    h = base & 0xFFFFFFFF
    for p in parts:
        h = (h * 1_000_003 + p + 0x9E3779B9) & 0x7FFFFFFF
    return h


def rollout_groups(
    sampler: SamplingClient,
    builders: Sequence[EnvGroupBuilder],
    *,
    temperature: float = 1.0,
    seed: int = 0,
    max_turns: int = 16,
) -> list[list[Trajectory]]:
    """One trajectory per env, grouped as the builders group them.

    Each turn submits the sampling calls of every live env before awaiting any of them.
    Sampling seeds are a pure function of ``seed`` and the env's position, so a rollout is
    reproducible. Envs of a group that share their first observation are sampled with one
    ``num_samples = group_size`` call.
    """
    envs: list[list[Env]] = [list(b.make_envs()) for b in builders]
    flat: list[tuple[int, int, Env]] = [
        (g, i, env) for g, group in enumerate(envs) for i, env in enumerate(group)
    ]
    trajs: dict[tuple[int, int], list[Transition]] = {(g, i): [] for g, i, _ in flat}
    live = []
    for g, i, env in flat:
        ob, stop = env.initial_observation()
        live.append((g, i, env, ob, stop))
    turn = 0
    while live:
        if turn >= max_turns:
            raise RuntimeError(f"episodes did not end within max_turns={max_turns}")
        # Batch envs with identical (observation, stop) within a group into one call.
        calls: dict[tuple[int, tuple[int, ...], Any], list[int]] = {}
        for k, (g, _i, _env, ob, stop) in enumerate(live):
            calls.setdefault((g, tuple(ob.to_ints()), stop), []).append(k)
        futures = []
        for (g, ob_tokens, stop), members in calls.items():
            first = live[members[0]]
            params = SamplingParams(
                max_tokens=stop.max_tokens,
                stop=list(stop.stop) or None,
                temperature=temperature,
                seed=_seed(seed, g, first[1], turn),
            )
            fut = sampler.sample(ModelInput.from_ints(ob_tokens), len(members), params)
            futures.append((members, fut))
        nxt = []
        for members, fut in futures:
            resp = fut.result()
            if len(resp.sequences) != len(members):
                raise RuntimeError(
                    f"sampler returned {len(resp.sequences)} sequences for {len(members)} asked"
                )
            for k, seq in zip(members, resp.sequences, strict=True):
                g, i, env, ob, _stop = live[k]
                action = list(seq.tokens)
                lps = list(seq.logprobs) if seq.logprobs is not None else None
                if lps is None or len(lps) != len(action):
                    raise RuntimeError("RL needs the sampler's per-token logprobs of each action")
                res = env.step(action)
                trajs[(g, i)].append(
                    Transition(
                        ob.to_ints(),
                        action,
                        lps,
                        float(res.reward),
                        res.episode_done,
                        {k2: float(v) for k2, v in res.metrics.items()},
                    )
                )
                if not res.episode_done:
                    if res.next_observation is None:
                        raise RuntimeError("env step neither ended the episode nor gave a next ob")
                    nxt.append((g, i, env, res.next_observation, res.next_stop or _stop))
        live = nxt
        turn += 1
    return [[Trajectory(trajs[(g, i)]) for i in range(len(group))] for g, group in enumerate(envs)]


@dataclass
class SequenceParts:
    """A trajectory flattened into token sequences (one per datum)."""

    tokens: list[int]
    #: Per token: sampler logprob, advantage weight mask (1 on action tokens) and index into
    #: the trajectory's flat action-token list (-1 for observation tokens).
    logprobs: list[float]
    mask: list[float]
    action_index: list[int]


def flatten(traj: Trajectory) -> list[SequenceParts]:
    """Merge turns whose observation extends the previous (observation + action) into one
    sequence; start a new one otherwise (tinker-cookbook's rule)."""
    out: list[SequenceParts] = []
    cur: SequenceParts | None = None
    idx = 0
    for t in traj.transitions:
        ob = t.observation
        if cur is not None and ob[: len(cur.tokens)] == cur.tokens:
            delta = ob[len(cur.tokens) :]
        else:
            if cur is not None:
                out.append(cur)
            cur = SequenceParts([], [], [], [])
            delta = ob
        cur.tokens += delta
        cur.logprobs += [0.0] * len(delta)
        cur.mask += [0.0] * len(delta)
        cur.action_index += [-1] * len(delta)
        cur.tokens += t.action
        cur.logprobs += t.logprobs
        cur.mask += [1.0] * len(t.action)
        cur.action_index += list(range(idx, idx + len(t.action)))
        idx += len(t.action)
    if cur is not None:
        out.append(cur)
    return out


@dataclass
class RLDatum:
    """A Datum for ``importance_sampling``/``ppo`` plus what the KL term needs."""

    datum: Datum
    #: Reference logprobs aligned with target positions (0 where ``mask`` is 0).
    ref_logprobs: list[float] | None
    mask: list[float]


def trajectory_datums(traj: Trajectory, advantage: float, scale: float = 1.0) -> list[RLDatum]:
    """Datums with per-token ``advantages = advantage·scale`` on action tokens (0 elsewhere)."""
    ref_flat: list[float] | None = None
    if traj.ref_logprobs is not None:
        ref_flat = [x for row in traj.ref_logprobs for x in row]
    out = []
    for part in flatten(traj):
        if len(part.tokens) < 2:
            continue
        tgt = part.tokens[1:]
        mask = part.mask[1:]
        lps = part.logprobs[1:]
        adv = [advantage * scale * m for m in mask]
        ref = None
        if ref_flat is not None:
            ref = [ref_flat[j] if j >= 0 else 0.0 for j in part.action_index[1:]]
        datum = Datum(
            ModelInput.from_ints(part.tokens[:-1]),
            {
                "target_tokens": TensorData(tuple(tgt), "int64"),
                "logprobs": TensorData(tuple(lps), "float32"),
                "advantages": TensorData(tuple(adv), "float32"),
            },
        )
        out.append(RLDatum(datum, ref, mask))
    return out


def reference_logprobs(reference: SamplingClient, trajs: Sequence[Trajectory]) -> None:
    """Fill ``traj.ref_logprobs`` with the reference model's logprobs of every action token."""
    jobs = []
    for traj in trajs:
        for part in flatten(traj):
            jobs.append((traj, part, reference.compute_logprobs(ModelInput.from_ints(part.tokens))))
    per_traj: dict[int, list[float]] = {}
    for traj, part, fut in jobs:
        lps = fut.result()
        flat = per_traj.setdefault(id(traj), [])
        for j, lp in zip(part.action_index, lps, strict=True):
            if j >= 0:
                flat.append(float(lp) if lp is not None else 0.0)
    for traj in trajs:
        flat = per_traj.get(id(traj), [])
        rows, k = [], 0
        for t in traj.transitions:
            rows.append(flat[k : k + len(t.action)])
            k += len(t.action)
        traj.ref_logprobs = rows
