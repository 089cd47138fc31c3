"""avbr.policy: bc_mlp, Pi0 and OpenVLA are one Policy, and each env's state is its own.

Every policy is driven through the protocol alone (``reset`` / ``act``) by three envs whose
episodes start at different steps, one of them reset mid-run. The model call of each policy (the
encoder + head for bc_mlp, ``predict_chunk`` for the VLAs) is observed, not replaced: every frame
encodes its env and step in its pixel values, so each planning call says which env it planned,
from which (prev, curr) frames, with which task; the actions ``act`` returns must then come from
that env's own chunk, in order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from avbr.adapters import EncoderConfig, build_encoder
from avbr.adapters.vla.factory import VLAS, build_policy, make_config
from avbr.adapters.vla.openvla import OpenVLAConfig
from avbr.adapters.vla.tokenizer import build_tiny_tokenizer
from avbr.envs import SuiteConfig, TaskInfo, run_episodes
from avbr.eval.rollouts.policies import PolicyConfig, TrainedPolicy
from avbr.eval.rollouts.policy_data import FeatureSpec
from avbr.eval.rollouts.rollout import EncoderPolicy
from avbr.policy import ActionChunker, Policy

VLA_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "vla" / "vla"
GAP = 2  # frame gap k of every policy here
N_ACTION_STEPS = 2  # actions executed per chunk (OpenVLA's token head: 1, its released setting)
STEPS = 8
TASKS = {0: TaskInfo("test", 0, "red", "reach the red block", None),
         1: TaskInfo("test", 1, "green", "reach the green block", None)}
#: env id -> (global step an episode starts, its task id); env 1 is reset mid-run, env 2 joins late.
EPISODES = {0: [(0, 0)], 1: [(0, 1), (3, 0)], 2: [(1, 1), (5, 1)]}


def frame(env: int, t: int) -> np.ndarray:
    """uint8 [32, 32, 3]: red = 40 env + 20, green = 20 t + 10 (survive any resize or crop)."""
    img = np.full((32, 32, 3), 128, np.uint8)
    img[..., 0], img[..., 1] = 40 * env + 20, 20 * t + 10
    return img


def decode(img) -> tuple[int, int]:
    """(env, step) of a frame made by :func:`frame`."""
    img = np.asarray(img)
    return (int(img[0, 0, 0]) - 20) // 40, (int(img[0, 0, 1]) - 10) // 20


def episode_start(env: int, t: int) -> tuple[int, int]:
    """(start step, task id) of the episode running in ``env`` at step ``t``."""
    return max((s, task) for s, task in EPISODES[env] if s <= t)


# ---- the three policies, each with a spy on its model call -------------------------------------

def bc_mlp(calls: list) -> EncoderPolicy:
    """Tiny random two-stream encoder + random bc_mlp head (as tests/eval builds them)."""
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(name="two_stream", arch="tiny", img_size=32, model_kwargs={"depth": 3},
                                          device="cpu"))
    head = TrainedPolicy(PolicyConfig(chunk_size=4, n_action_steps=N_ACTION_STEPS, hidden_dim=16),
                         feature_dim=encoder.feature_dim, num_tasks=2)
    policy = EncoderPolicy(encoder, head, FeatureSpec(readout="cls", gap=GAP), task_order=[0, 1],
                           n_action_steps=N_ACTION_STEPS)
    encode, predict = encoder.encode, head.predict
    frames: list = []

    def spy_encode(prev, curr):
        frames.append((prev, curr))
        return encode(prev, curr)

    def spy_predict(features, state, task_index):
        chunks = predict(features, state, task_index)
        (prev, curr), = frames
        frames.clear()
        calls.append([(decode(curr[j]), decode(prev[j]), int(task_index[j]), chunks[j]) for j in range(len(chunks))])
        return chunks

    encoder.encode, head.predict = spy_encode, spy_predict
    return policy


def vla(name: str, option: str, **overrides):
    """A VLA from the shipped tiny config (``configs/vla/vla/<option>.yaml``), random init."""

    def make(calls: list):
        torch.manual_seed(0)
        fields = {**OmegaConf.to_container(OmegaConf.load(VLA_CONFIGS / f"{option}.yaml")), "frame_gap": GAP, **overrides}
        assert fields.pop("name") == name
        cfg = make_config(name, fields)
        tokenizer = build_tiny_tokenizer([OpenVLAConfig().prompt_template, *(t.language for t in TASKS.values())], 320)
        norms = VLAS.get(name).fit_normalizers(cfg, torch.randn(64, 7), torch.randn(64, 8))
        policy = build_policy(name, cfg, tokenizer, norms).eval()
        predict = policy.predict_chunk
        languages = {t.language: t.task_id for t in TASKS.values()}

        def spy(prev, curr, state, instructions):
            chunks = predict(prev, curr, state, instructions)
            calls.append([(decode(curr[j]), decode(prev[j]), languages[instructions[j]], chunks[j].numpy())
                          for j in range(len(chunks))])
            return chunks

        policy.predict_chunk = spy
        return policy

    return make


POLICIES = {
    "bc_mlp": (bc_mlp, N_ACTION_STEPS),
    "pi0": (vla("pi0", "pi0_tiny", n_action_steps=N_ACTION_STEPS), N_ACTION_STEPS),
    "openvla": (vla("openvla", "openvla_tiny"), 1),
    "openvla_l1_chunk": (vla("openvla", "openvla_tiny", action_head="l1_chunk", n_action_steps=N_ACTION_STEPS),
                         N_ACTION_STEPS),
}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_protocol_with_independent_envs(name: str) -> None:
    make, n_steps = POLICIES[name]
    calls: list = []
    policy = make(calls)
    assert isinstance(policy, Policy)
    actions: dict[tuple[int, int], np.ndarray] = {}
    planned: dict[tuple[int, int], tuple] = {}  # (env, step) -> (prev (env, step), task id, chunk)
    for t in range(STEPS):
        starting = [e for e, eps in EPISODES.items() if any(s == t for s, _ in eps)]
        if starting:
            policy.reset(starting, [TASKS[episode_start(e, t)[1]] for e in starting])
        acting = sorted((e for e, eps in EPISODES.items() if eps[0][0] <= t), reverse=True)  # any order
        obs = {"agentview": np.stack([frame(e, t) for e in acting]), "wrist": np.stack([frame(e, t) for e in acting]),
               "state": np.array([[e, t, 0, 0, 0, 0, 0, 0] for e in acting], np.float32)}
        n_calls = len(calls)
        out = policy.act(obs, acting)
        assert out.shape == (len(acting), 7) and out.dtype == np.float32
        assert len(calls) - n_calls <= 1, "envs that plan at the same step are planned in one call"
        for rows in calls[n_calls:]:
            for curr, prev, task, chunk in rows:
                assert curr[1] == t, "a planning call saw a frame of another step"
                planned[curr] = (prev, task, chunk)
        actions.update({(e, t): out[k] for k, e in enumerate(acting)})

    for (env, t), action in actions.items():
        start, task = episode_start(env, t)
        plan = start + (t - start) // n_steps * n_steps  # this env re-plans every n_steps of its own episode
        assert (env, plan) in planned, f"{name}: env {env} did not plan at step {plan}"
        prev, seen_task, chunk = planned[(env, plan)]
        # prev is k steps back in the same env's episode, never from before its reset
        assert prev == (env, max(plan - GAP, start)), f"{name}: env {env} at step {plan} paired with {prev}"
        assert seen_task == task, f"{name}: env {env} planned with task {seen_task}, its task is {task}"
        np.testing.assert_array_equal(action, chunk[t - plan])  # its own queue, in order
    expected = {(e, s + j) for e, eps in EPISODES.items() for i, (s, _) in enumerate(eps)
                for j in range(0, (eps[i + 1][0] if i + 1 < len(eps) else STEPS) - s, n_steps)}
    assert set(planned) == expected
    # the mid-run reset: env 1's new episode starts with prev == curr
    assert planned[(1, 3)][0] == (1, 3)


def test_chunker_errors_say_how_to_fix() -> None:
    chunker = ActionChunker(frame_gap=1, n_action_steps=2)
    obs = {"agentview": np.zeros((1, 4, 4, 3), np.uint8), "state": np.zeros((1, 8), np.float32)}
    with pytest.raises(KeyError, match="call reset"):
        chunker.act(obs, [0], lambda r: np.zeros((1, 2, 7)))
    chunker.reset([0], [TASKS[0]])
    with pytest.raises(ValueError, match="expected \\[1, >= 2, 7\\]"):
        chunker.act(obs, [0], lambda r: np.zeros((1, 1, 7)))
    with pytest.raises(ValueError, match="one task per env"):
        chunker.reset([0, 1], [TASKS[0]])


def test_run_episodes_takes_only_policies() -> None:
    """A bare function is refused before any simulator starts."""
    with pytest.raises(TypeError, match="reset\\(env_ids, tasks\\) and act\\(obs, env_ids\\)"):
        run_episodes(SuiteConfig(name="robosuite_lift"), lambda obs: np.zeros((1, 7)))
