"""minioptim.ScheduleFreeAdamW against a per-tensor loop written from the paper.

The loop keeps the three sequences x, y, z of Defazio et al. (2024) explicitly; the fused
optimizer keeps only z and the second moment and derives x from the parameters (y), so
agreement checks that derivation too. Per-group scalars (k, the weight sum, the largest
learning rate, the mode) live in the param group and are checkpointed with it.
"""

import copy
import math

import pytest
import torch
from conftest import make_tensors

import minioptim
from minioptim.testing import assert_same_trajectory, leaf_copies

TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-12, atol=1e-13)}


class LoopScheduleFree(torch.optim.Optimizer):
    """Schedule-free AdamW, one tensor at a time, with x, y and z kept separately."""

    def __init__(self, params, lr=0.0025, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 warmup_steps=0, r=0.0, weight_lr_power=2.0):  # fmt: skip
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      warmup_steps=warmup_steps, r=r, p=weight_lr_power,
                                      k=0, total=0.0, top=-1.0))  # fmt: skip

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            group["k"] += 1
            k = group["k"]
            warm = min(1.0, k / group["warmup_steps"]) if group["warmup_steps"] else 1.0
            lr = group["lr"] * warm * math.sqrt(1 - beta2**k)
            group["top"] = max(group["top"], lr)
            weight = k ** group["r"] * group["top"] ** group["p"]
            group["total"] += weight
            c = weight / group["total"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s.update(x=p.clone(), z=p.clone(), v=torch.zeros_like(p))
                s["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                y = p.clone()
                s["z"] -= lr * (p.grad / (s["v"].sqrt() + group["eps"]) + group["weight_decay"] * y)
                s["x"] = (1 - c) * s["x"] + c * s["z"]
                p.copy_((1 - beta1) * s["z"] + beta1 * s["x"])


SETTINGS = [dict(lr=0.01), dict(lr=0.02, weight_decay=0.1, warmup_steps=5, r=0.5)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("settings", SETTINGS, ids=["plain", "decay-warmup-r"])
@pytest.mark.parametrize("impl", ["auto", "compiled"])
def test_schedule_free_follows_the_three_sequence_loop(dtype, settings, impl):
    assert_same_trajectory(
        lambda ps: minioptim.ScheduleFreeAdamW(ps, impl=impl, **settings),
        lambda ps: LoopScheduleFree(ps, **settings),
        make_tensors(dtype),
        steps=30,
        compare_state=False,  # the loop keeps x, y, z; minioptim z and exp_avg_sq
        **TOLERANCE[dtype],
    )


def test_parameters_without_gradients_do_not_move_and_the_group_count_goes_on():
    def sometimes(step, index, param, generator):
        if index == 1 and step % 3 == 0:
            return None
        return torch.randn(param.shape, generator=generator, dtype=param.dtype)

    assert_same_trajectory(
        lambda ps: minioptim.ScheduleFreeAdamW(ps, lr=0.01),
        lambda ps: LoopScheduleFree(ps, lr=0.01),
        make_tensors(torch.float64),
        steps=12,
        gradient=sometimes,
        compare_state=False,
        **TOLERANCE[torch.float64],
    )


def grads_for(tensors, steps, seed=5):
    gen = torch.Generator().manual_seed(seed)
    return [
        [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in tensors] for _ in range(steps)
    ]


def train(optimizer, params, steps):
    for step_grads in steps:
        for p, g in zip(params, step_grads, strict=True):
            p.grad = g.clone()
        optimizer.step()


def test_eval_holds_the_average_x_and_train_restores_y():
    tensors = make_tensors(torch.float64)
    ours, loop = leaf_copies(tensors), leaf_copies(tensors)
    optimizer, reference = (
        minioptim.ScheduleFreeAdamW(ours, lr=0.01),
        LoopScheduleFree(loop, lr=0.01),
    )
    grads = grads_for(tensors, 6)
    train(optimizer, ours, grads)
    train(reference, loop, grads)
    y = [p.detach().clone() for p in ours]
    optimizer.eval()
    for p, q in zip(ours, loop, strict=True):
        torch.testing.assert_close(p, reference.state[q]["x"], **TOLERANCE[torch.float64])
    with pytest.raises(RuntimeError, match=r"optimizer\.train\(\)"):
        optimizer.step()
    optimizer.train()
    for p, before in zip(ours, y, strict=True):
        torch.testing.assert_close(p.detach(), before, **TOLERANCE[torch.float64])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_resume_from_a_checkpoint_in_either_mode_equals_the_uninterrupted_run(mode):
    tensors = make_tensors(torch.float64)
    grads = grads_for(tensors, 10)

    def run_with_pause(params, optimizer):
        train(optimizer, params, grads[:5])
        if mode == "eval":
            optimizer.eval()
        return optimizer

    straight = leaf_copies(tensors)
    optimizer = run_with_pause(straight, minioptim.ScheduleFreeAdamW(straight, lr=0.01))
    optimizer.train()
    train(optimizer, straight, grads[5:])

    first = leaf_copies(tensors)
    paused = run_with_pause(first, minioptim.ScheduleFreeAdamW(first, lr=0.01))
    saved = copy.deepcopy((paused.state_dict(), [p.detach().clone() for p in first]))
    resumed = leaf_copies(saved[1])  # a new model, loaded from the checkpoint
    optimizer = minioptim.ScheduleFreeAdamW(resumed, lr=0.01)
    optimizer.load_state_dict(saved[0])
    assert optimizer.param_groups[0]["k"] == 5
    assert optimizer.param_groups[0]["train_mode"] == (mode == "train")
    optimizer.train()
    train(optimizer, resumed, grads[5:])
    for p, q in zip(resumed, straight, strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_group_scalars_count_steps_per_group_not_per_parameter():
    a, b = (torch.zeros(3, requires_grad=True) for _ in range(2))
    optimizer = minioptim.ScheduleFreeAdamW([{"params": [a]}, {"params": [b], "lr": 0.1}])
    for _ in range(3):
        a.grad, b.grad = torch.ones(3), None
        optimizer.step()
    assert [g["k"] for g in optimizer.param_groups] == [3, 3]
    # lr_k = 0.1 sqrt(1 - 0.999^k) grows with k, so the largest is the latest, and each
    # weight is lr_k squared (weight_lr_power 2, r 0)
    expected = sum(0.1**2 * (1 - 0.999**k) for k in (1, 2, 3))
    assert optimizer.param_groups[1]["weight_sum"] == pytest.approx(expected, rel=1e-12)
