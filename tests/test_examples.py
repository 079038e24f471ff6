"""The optimizers in examples/ against per-tensor loops written from their papers."""

import pytest
import torch
from conftest import TOLERANCES, make_tensors

from examples.adan import Adan
from examples.ademamix import AdEMAMix
from minioptim.testing import assert_same_trajectory

TOLERANCE_BY_DTYPE = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.float64: dict(rtol=1e-12, atol=1e-14),
}


class LoopAdan(torch.optim.Optimizer):
    def __init__(self, params, lr, betas, eps, weight_decay):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                g, s = p.grad, self.state[p]
                if not s:  # the first difference is zero: g_prev = g
                    s.update(t=0, m=torch.zeros_like(p), n=torch.zeros_like(p),
                             v=torch.zeros_like(p), prev=g.clone())  # fmt: skip
                s["t"] += 1
                t = s["t"]
                diff = g - s["prev"]
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["n"] = b2 * s["n"] + (1 - b2) * diff
                s["v"] = b3 * s["v"] + (1 - b3) * (g + b2 * diff) ** 2
                s["prev"] = g.clone()
                m_hat, n_hat = s["m"] / (1 - b1**t), s["n"] / (1 - b2**t)
                denom = torch.sqrt(s["v"] / (1 - b3**t)) + group["eps"]
                p.copy_(p * (1 - lr * wd) - lr * (m_hat + b2 * n_hat) / denom)


class LoopAdEMAMix(torch.optim.Optimizer):
    def __init__(self, params, lr, betas, alpha, eps, weight_decay):
        defaults = dict(lr=lr, betas=betas, alpha=alpha, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            for p in group["params"]:
                g, s = p.grad, self.state[p]
                if not s:
                    s.update(t=0, fast=torch.zeros_like(p), slow=torch.zeros_like(p),
                             v=torch.zeros_like(p))  # fmt: skip
                s["t"] += 1
                t = s["t"]
                s["fast"] = b1 * s["fast"] + (1 - b1) * g
                s["slow"] = b3 * s["slow"] + (1 - b3) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g * g
                top = s["fast"] / (1 - b1**t) + group["alpha"] * s["slow"]
                step = top / (torch.sqrt(s["v"] / (1 - b2**t)) + group["eps"])
                p.copy_(p - group["lr"] * (step + group["weight_decay"] * p))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adan_example_follows_the_paper_loop(dtype):
    settings = dict(lr=0.01, betas=(0.98, 0.92, 0.99), eps=1e-8, weight_decay=0.02)
    assert_same_trajectory(
        lambda ps: Adan(ps, **settings),
        lambda ps: LoopAdan(ps, **settings),
        make_tensors(dtype),
        steps=20,
        compare_state=False,
        **TOLERANCE_BY_DTYPE[dtype],
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ademamix_example_follows_the_paper_loop(dtype):
    settings = dict(lr=0.01, betas=(0.9, 0.999, 0.99), alpha=5.0, eps=1e-8, weight_decay=0.1)
    assert_same_trajectory(
        lambda ps: AdEMAMix(ps, **settings),
        lambda ps: LoopAdEMAMix(ps, **settings),
        make_tensors(dtype),
        steps=20,
        compare_state=False,
        **TOLERANCE_BY_DTYPE[dtype],
    )


def test_examples_are_at_most_40_lines():
    from pathlib import Path

    for name in ("adan.py", "ademamix.py"):
        lines = (Path(__file__).parent.parent / "examples" / name).read_text().splitlines()
        assert len(lines) <= 40, name


def muon_adamw_pair(params, muon_lr, adamw_lr):
    """torch's recipe: torch.optim.Muon for the matrices, torch.optim.AdamW for the rest."""
    matrices = [p for p in params if p.ndim == 2]
    others = [p for p in params if p.ndim != 2]
    return (
        torch.optim.Muon(matrices, lr=muon_lr),
        torch.optim.AdamW(others, lr=adamw_lr, foreach=False),
    )


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_muon_with_adamw_as_one_optimizer_equals_torchs_two(impl):
    from examples.muon_adamw import MuonWithAdamW
    from minioptim.testing import leaf_copies

    tensors = make_tensors(torch.float32) + [torch.randn(5, 3), torch.randn(4, 4)]
    ours, theirs = leaf_copies(tensors), leaf_copies(tensors)
    groups = [
        {"params": [p for p in ours if p.ndim == 2], "use_muon": True, "lr": 0.02},
        {"params": [p for p in ours if p.ndim != 2], "use_muon": False, "lr": 3e-3},
    ]
    optimizer = MuonWithAdamW(groups)
    optimizer.impl = impl
    reference = muon_adamw_pair(theirs, muon_lr=0.02, adamw_lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        for p, q in zip(ours, theirs, strict=True):
            q.grad = torch.randn(p.shape, generator=gen)
            p.grad = q.grad.clone()
        optimizer.step()
        for torch_optimizer in reference:
            torch_optimizer.step()
    # the reference path repeats torch's operations; the fast path's fused kernels and
    # batched Newton–Schulz agree to rounding (bit for bit on some CPUs)
    tolerance = dict(rtol=0, atol=0) if impl == "reference" else TOLERANCES["fast", torch.float32]
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, **tolerance)
    for p, q in zip(ours, theirs, strict=True):
        torch_state = next(o.state[q] for o in reference if q in o.state)
        assert sorted(optimizer.state[p]) == sorted(torch_state), p.shape
    saved = optimizer.state_dict()
    assert set(saved["minioptim_steps"]) == {  # counts of the groups without "step"
        i for i, p in enumerate(groups[0]["params"] + groups[1]["params"]) if p.ndim == 2
    }
