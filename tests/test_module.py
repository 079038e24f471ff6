"""minioptim driven the way users drive optimizers: zero_grad(), backward(), step()."""

import copy

import pytest
import torch
from cases import CASES
from torch import nn

import minioptim


def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        # No bias before BatchNorm (the usual practice): BatchNorm cancels it, so its
        # gradient is rounding noise that Adam would amplify into chaotic steps.
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 10),
    )


def batches(steps: int):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        yield torch.randn(8, 1, 6, 6, generator=gen), torch.randint(0, 10, (8,), generator=gen)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_training_loop_matches_torch(case, impl):
    """20 steps of zero_grad, forward, backward, step on a small convnet (Muon: its
    linear layer): the losses and the weights must follow the same training under the
    case's reference."""
    ours, theirs = small_convnet(), small_convnet()
    opt = case.ours(case.selects(ours.parameters()), impl)
    ref = case.theirs(case.selects(theirs.parameters()))
    losses = {"ours": [], "theirs": []}
    for x, y in batches(20):
        for key, model, optimizer in (("ours", ours, opt), ("theirs", theirs, ref)):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            losses[key].append(loss.item())
    # The reference path repeats torch's operations: bit-identical. The fast path (torch's
    # fused kernels) and the per-tensor definitions agree to float32 rounding, which 20
    # steps of training do not amplify beyond the registry's tolerance (measured: a fifth).
    tolerance = case.tolerance(impl, torch.float32)
    torch.testing.assert_close(losses["ours"], losses["theirs"], **tolerance)
    for (key, p), q in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, **tolerance, msg=lambda m, k=key: f"{k}: {m}")
    assert not torch.equal(ours[-1].weight, small_convnet()[-1].weight), "training changed nothing"


def test_step_with_closure_returns_the_loss():
    """step(closure) evaluates the closure with gradients enabled and returns its loss:
    the same losses as torch.optim's, and the same weights."""
    model = small_convnet()
    reference = copy.deepcopy(model)
    opt = minioptim.Adam(model.parameters(), lr=1e-2)
    ref = torch.optim.Adam(reference.parameters(), lr=1e-2, foreach=False)
    x, y = next(batches(1))
    losses = []
    for m, o in ((model, opt), (reference, ref)):

        def closure(m=m, o=o):
            o.zero_grad()
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            return loss

        losses.append([o.step(closure) for _ in range(3)])
    ours, theirs = losses
    assert all(isinstance(loss, torch.Tensor) for loss in ours)
    torch.testing.assert_close(torch.stack(ours), torch.stack(theirs), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(model[0].weight, reference[0].weight)
