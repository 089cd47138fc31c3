"""Policy head: chunk targets, normalisation fitted on training demos only, val selection, save/load."""

import numpy as np
import pytest
import torch

from avbr.eval.rollouts.policies import (DemoArrays, Normalizer, PolicyConfig, TrainedPolicy, chunk_targets, list_policies,
                                split_demos, train_policy)


def test_chunk_targets_pad_and_mask():
    actions = np.arange(5, dtype=np.float32)[:, None].repeat(7, 1)  # a_t = t
    targets, valid = chunk_targets(actions, 3)
    assert targets.shape == (5, 3, 7)
    np.testing.assert_array_equal(targets[3, :, 0], [3, 4, 4])
    np.testing.assert_array_equal(valid[3], [True, True, False])
    assert valid[0].all() and valid[4].sum() == 1


def test_config_rules():
    with pytest.raises(ValueError, match="n_action_steps"):
        PolicyConfig(chunk_size=4, n_action_steps=5)
    assert "bc_mlp" in list_policies()


def _demos(n_per_task=6, tasks=2, steps=20, seed=0):
    rng = np.random.default_rng(seed)
    demos = []
    for task in range(tasks):
        for _ in range(n_per_task):
            feats = rng.normal(size=(steps, 5)).astype(np.float32) * 10 + 3
            state = rng.normal(size=(steps, 8)).astype(np.float32)
            # The action is a fixed function of features and task: learnable, gripper sign flips with task.
            actions = np.zeros((steps, 7), np.float32)
            actions[:, 0] = 0.05 * feats[:, 0]
            actions[:, 6] = 1.0 if task else -1.0
            demos.append(DemoArrays(task, feats, state, actions))
    return demos


def test_split_holds_out_whole_demos_per_task():
    demos = _demos()
    train, val = split_demos(demos, 0.2, seed=1)
    assert len(val) == 4 and len(train) == 8  # ceil(0.2*6)=2 per task
    assert {d.task_index for d in val} == {0, 1}
    assert split_demos(demos, 0.2, seed=1)[1][0] is val[0]


def test_training_learns_selects_on_val_and_round_trips(tmp_path):
    demos = _demos()
    cfg = PolicyConfig(chunk_size=4, n_action_steps=2, hidden_dim=64, epochs=25, batch_size=32, lr=3e-3, dropout=0.0)
    rows = []
    policy, selection = train_policy(cfg, demos, num_tasks=2, seed=0, log=rows.append)
    best = min(rows, key=lambda r: r["val_loss"])
    assert selection["epoch"] == best["epoch"] and selection["val_loss"] == pytest.approx(best["val_loss"])
    assert selection["val_demos"] == 2 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    # Normalisers come from the training split only.
    train, _ = split_demos(demos, cfg.val_fraction, 0)
    np.testing.assert_allclose(policy.action_norm.mean.numpy(),
                               np.concatenate([d.actions for d in train]).mean(0), atol=1e-5)
    d = demos[-1]
    chunk = policy.predict(torch.from_numpy(d.features[:3]), torch.from_numpy(d.state[:3]), torch.tensor([1, 1, 1]))
    assert chunk.shape == (3, 4, 7)
    np.testing.assert_array_equal(chunk[..., 6], 1.0)  # binarised gripper, task 1 closes
    np.testing.assert_allclose(chunk[:, 0, 0], np.clip(d.actions[:3, 0], -1, 1), atol=0.15)
    policy.save(tmp_path / "head", selection)
    loaded, meta = TrainedPolicy.load(tmp_path / "head")
    assert meta["epoch"] == selection["epoch"]
    np.testing.assert_array_equal(loaded.predict(torch.from_numpy(d.features[:3]), torch.from_numpy(d.state[:3]),
                                                 torch.tensor([1, 1, 1])), chunk)


def test_normalizer_constant_dims():
    x = np.stack([np.arange(4.0), np.full(4, 2.0)], 1)
    norm = Normalizer.fit(x)
    assert norm.std[1] == 1.0
    y = torch.tensor([[1.0, 2.0]])
    torch.testing.assert_close(norm.inverse(norm(y)), y)
