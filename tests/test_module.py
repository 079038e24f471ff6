"""minioptim driven the way users drive optimizers: zero_grad(), backward(), step()."""

import copy

import pytest
import torch
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


@pytest.mark.parametrize(
    "name, options",
    [
        ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)),
        ("Adam", dict(lr=1e-2, amsgrad=True)),
        ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ],
)
@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_training_loop_matches_torch(name, options, impl):
    ours, theirs = small_convnet(), small_convnet()
    opt = getattr(minioptim, name)(ours.parameters(), impl=impl, **options)
    ref = getattr(torch.optim, name)(theirs.parameters(), foreach=False, **options)
    for x, y in batches(20):
        for model, optimizer in ((ours, opt), (theirs, ref)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    # The reference path repeats torch's operations: bit-identical. The fast path (torch's
    # fused kernels) agrees to float32 rounding, which 20 steps of training do not amplify.
    tolerance = dict(rtol=0, atol=0) if impl == "reference" else dict(rtol=1e-4, atol=1e-5)
    for (key, p), q in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, **tolerance, msg=lambda m, k=key: f"{k}: {m}")
    assert not torch.equal(ours[0].weight, small_convnet()[0].weight), "training changed nothing"


def test_step_with_closure_returns_the_loss():
    model = small_convnet()
    reference = copy.deepcopy(model)
    opt = minioptim.Adam(model.parameters(), lr=1e-2)
    ref = torch.optim.Adam(reference.parameters(), lr=1e-2, foreach=False)
    x, y = next(batches(1))
    for m, o in ((model, opt), (reference, ref)):

        def closure(m=m, o=o):
            o.zero_grad()
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            return loss

        for _ in range(3):
            loss = o.step(closure)
        assert isinstance(loss, torch.Tensor)
    torch.testing.assert_close(model[0].weight, reference[0].weight)
