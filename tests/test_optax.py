"""One optimizer specification, three implementations: minioptim, torch.optim and Optax.

The same least-squares problem is optimized in float64 by each library, each computing its
own gradients (PyTorch autograd, JAX), and the iterates must agree after every step.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import minioptim  # noqa: E402

jax.config.update("jax_enable_x64", True)

STEPS = 25
RTOL, ATOL = 1e-10, 1e-12  # float64; the libraries differ only in rounding


def problem():
    """A linear model y = x W + b with a mean squared error loss, and its data."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, 5))
    y = x @ rng.normal(size=(5, 3)) + rng.normal(size=3) + 0.1 * rng.normal(size=(64, 3))
    init = {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=3)}
    return x, y, init


def optax_trajectory(transformation):
    x, y, init = problem()
    params = {k: jnp.asarray(v) for k, v in init.items()}

    def loss(params):
        return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)

    state = transformation.init(params)
    trajectory = []
    for _ in range(STEPS):
        updates, state = transformation.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append({k: np.asarray(v) for k, v in params.items()})
    return trajectory


def torch_trajectory(make_optimizer):
    x, y, init = problem()
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in init.items()}
    optimizer = make_optimizer([params["w"], params["b"]])
    trajectory = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        torch.mean((x @ params["w"] + params["b"] - y) ** 2).backward()
        optimizer.step()
        trajectory.append({k: v.detach().numpy().copy() for k, v in params.items()})
    return trajectory


# name -> (the Optax transformation, the minioptim class, its arguments).
# torch.optim has a class of the same name for all but SignSGD and Lion.
CASES = {
    "sgd": (lambda: optax.sgd(0.1), "SGD", dict(lr=0.1)),
    "sgd-momentum": (lambda: optax.sgd(0.05, momentum=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
    "sgd-nesterov": (
        lambda: optax.sgd(0.05, momentum=0.9, nesterov=True),
        "SGD",
        dict(lr=0.05, momentum=0.9, nesterov=True),
    ),
    "adam": (
        lambda: optax.adam(0.05, b1=0.8, b2=0.99, eps=1e-6),
        "Adam",
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6),
    ),
    "adamw": (
        lambda: optax.adamw(0.05, weight_decay=0.1),
        "AdamW",
        dict(lr=0.05, weight_decay=0.1),
    ),
    "sign_sgd": (lambda: optax.sign_sgd(0.01), "SignSGD", dict(lr=0.01)),
    "signum": (lambda: optax.signum(0.01, beta=0.9), "SignSGD", dict(lr=0.01, momentum=0.9)),
    "lion": (lambda: optax.lion(0.01, weight_decay=0.0), "Lion", dict(lr=0.01)),
    "lion-wd": (
        lambda: optax.lion(0.01, b1=0.8, b2=0.95, weight_decay=0.3),
        "Lion",
        dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.3),
    ),
}


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize("case", list(CASES))
def test_same_iterates_in_optax_torch_and_minioptim(case, impl):
    make_optax, name, options = CASES[case]
    expected = optax_trajectory(make_optax())
    runs = {
        "minioptim": torch_trajectory(lambda ps: getattr(minioptim, name)(ps, impl=impl, **options))
    }
    if hasattr(torch.optim, name):
        runs["torch.optim"] = torch_trajectory(
            lambda ps: getattr(torch.optim, name)(ps, foreach=False, **options)
        )
    for library, trajectory in runs.items():
        for step, (got, want) in enumerate(zip(trajectory, expected, strict=True), start=1):
            for key in want:
                np.testing.assert_allclose(
                    got[key],
                    want[key],
                    rtol=RTOL,
                    atol=ATOL,
                    err_msg=f"{library}, step {step}, {key}",
                )
    start = problem()[2]["w"]
    assert not np.allclose(expected[-1]["w"], start), "the optimizer must have moved"


def test_newton_schulz_matches_optax_muon_orthogonalization():
    """minioptim's Newton–Schulz (bfloat16, as torch.optim.Muon) against optax.contrib's
    (float64 here), same coefficients and steps: they agree to bfloat16 rounding compounded
    over five iterations (measured relative Frobenius error 1.0-1.6 %; bfloat16's epsilon
    is 0.8 %), and map every singular value into roughly [0.7, 1.2]."""
    from optax.contrib import _muon

    rng = np.random.default_rng(3)
    for shape in [(8, 5), (5, 8), (6, 6), (64, 32)]:
        g = rng.normal(size=shape)
        ours = minioptim.functional.newton_schulz(
            torch.from_numpy(g), minioptim.muon.NS_COEFFICIENTS, 5, 1e-7
        ).double()
        theirs = _muon.orthogonalize_via_newton_schulz(
            jnp.asarray(g), jnp.asarray(minioptim.muon.NS_COEFFICIENTS), ns_steps=5
        )
        error = np.linalg.norm(ours.numpy() - theirs) / np.linalg.norm(theirs)
        assert error < 0.03, f"{shape}: relative error {error:.4f}"
        singular_values = np.linalg.svd(ours.numpy(), compute_uv=False)
        assert 0.6 < singular_values.min() and singular_values.max() < 1.2
