"""EncoderPolicy: frame pairs (o_{t-k}, o_t), batched encoding only when a chunk runs out, open-loop chunks."""

import numpy as np
import torch

from avbr.adapters import Features
from avbr.envs import TaskInfo
from avbr.eval.rollouts.policies import PolicyConfig, TrainedPolicy
from avbr.eval.rollouts.policy_data import FeatureSpec, pair_indices
from avbr.eval.rollouts.rollout import EncoderPolicy


class PairEncoder:
    """Fake encoder: cls = [prev value, curr value] of each frame's top-left pixel; records batch sizes."""

    def __init__(self):
        self.calls = []

    def encode(self, prev, curr):
        self.calls.append(len(curr))
        cls = torch.tensor(np.stack([prev[:, 0, 0, 0], curr[:, 0, 0, 0]], 1), dtype=torch.float32)
        return Features(cls=cls, patches=cls[:, None, :], grid=(1, 1))


class StepHead(TrainedPolicy):
    """Head whose chunk is [[curr, prev, i, ...] for i in 0..C-1] (identity normalisers)."""

    def predict(self, features, state, task_index):
        c = self.cfg.chunk_size
        out = np.zeros((len(features), c, 7), np.float32)
        out[:, :, 0] = features[:, 1:2].numpy()
        out[:, :, 1] = features[:, 0:1].numpy()
        out[:, :, 2] = np.arange(c)
        out[:, :, 3] = task_index[:, None].numpy()
        return out


def _obs(t, env_ids):
    frames = np.zeros((len(env_ids), 4, 4, 3), np.uint8)
    for k, e in enumerate(env_ids):
        frames[k, 0, 0, 0] = 10 * e + t  # pixel value encodes (env, step)
    return {"agentview": frames, "wrist": frames, "state": np.zeros((len(env_ids), 8), np.float32)}


def test_pairs_chunks_and_batching():
    enc = PairEncoder()
    head = StepHead(PolicyConfig(chunk_size=4, n_action_steps=3), feature_dim=2, num_tasks=1)
    policy = EncoderPolicy(enc, head, FeatureSpec(readout="cls", gap=2), task_order=[5], n_action_steps=3)
    task = TaskInfo("s", 5, "t", "", None)
    policy.reset([0, 1], [task, task])
    actions = [policy.act(_obs(t, [0, 1]), [0, 1]) for t in range(7)]
    # Encoded at steps 0, 3, 6 with both envs in one batch.
    assert enc.calls == [2, 2, 2]
    a = np.stack(actions)  # [T, B, 7]
    np.testing.assert_array_equal(a[:, 1, 2], [0, 1, 2, 0, 1, 2, 0])  # open-loop chunk index
    np.testing.assert_array_equal(a[[0, 3, 6], 1, 0], [10, 13, 16])  # o_t of env 1
    # o_{t-k} with k=2 and the training rule max(t-k, 0).
    np.testing.assert_array_equal(a[[0, 3, 6], 1, 1], 10 + pair_indices(7, 2)[[0, 3, 6]])
    np.testing.assert_array_equal(a[:, :, 3], 0)  # one-hot index of task 5
    # A new episode in env 0 clears its history and queue: it plans at once, alone.
    policy.reset([0], [task])
    policy.act(_obs(0, [0, 1]), [0, 1])
    assert enc.calls[-1] == 1
