"""Bad input gets a clear error that names the argument."""

import pytest
import torch

import minioptim


def params():
    return [torch.zeros(3, requires_grad=True)]


def matrix():
    return [torch.zeros(3, 2, requires_grad=True)]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: minioptim.SGD(params(), lr=-0.1), "lr"),
        (lambda: minioptim.SGD(params(), lr=0.1, momentum=-0.5), "momentum"),
        (lambda: minioptim.SGD(params(), lr=0.1, weight_decay=-1), "weight_decay"),
        (lambda: minioptim.SGD(params(), lr=0.1, nesterov=True), "nesterov"),
        (
            lambda: minioptim.SGD(params(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
            "nesterov",
        ),
        (lambda: minioptim.SGD(params(), lr=float("nan")), "lr must be >= 0"),
        (lambda: minioptim.SGD(params(), lr=torch.tensor([1])), "floating point"),
        (lambda: minioptim.Adam(params(), lr=-1e-3), "lr"),
        (lambda: minioptim.Adam(params(), betas=(0.9, 0.99, 0.999)), "pair"),
        (lambda: minioptim.Adam(params(), eps=-1e-8), "eps"),
        (lambda: minioptim.Adam(params(), betas=(1.0, 0.999)), r"betas\[0\]"),
        (lambda: minioptim.Adam(params(), betas=(0.9, -0.1)), r"betas\[1\]"),
        (lambda: minioptim.Adam(params(), betas=(0.9,)), "betas"),
        (lambda: minioptim.Adam(params(), betas=(torch.tensor(0.9), 0.99)), "both tensors"),
        (lambda: minioptim.Adam(params(), betas=(0.9, torch.tensor(0.99))), "both tensors"),
        (
            lambda: minioptim.Adam([{"params": params(), "betas": (torch.tensor(0.9), 0.99)}]),
            "both tensors",
        ),
        (
            lambda: minioptim.Adam(params(), lr=torch.tensor(1e-3), foreach=True),
            "lr as a Tensor is not supported with foreach=True",
        ),
        (
            lambda: minioptim.AdamW(
                params(), betas=(torch.tensor(0.9), torch.tensor(0.99)), foreach=True
            ),
            r"betas\[0\] as a Tensor is not supported with foreach=True",
        ),
        (lambda: minioptim.AdamW(params(), weight_decay=-0.1), "weight_decay"),
        (lambda: minioptim.SignSGD(params(), lr=-1.0), "lr"),
        (lambda: minioptim.SignSGD(params(), momentum=1.0), "momentum"),
        (lambda: minioptim.SignSGD(params(), momentum=-0.1), "momentum"),
        (lambda: minioptim.Lion(params(), betas=(0.9, 1.0)), r"betas\[1\]"),
        (lambda: minioptim.Lion(params(), weight_decay=-0.1), "weight_decay"),
        (lambda: minioptim.Lion(params(), lr=-0.1), "lr"),
        (lambda: minioptim.Lion(params(), betas=(0.9,)), "pair"),
        (lambda: minioptim.Lion(params(), betas=(torch.tensor(0.9), 0.99)), "both tensors"),
        (lambda: minioptim.Muon([torch.zeros(2, 3, 4, requires_grad=True)]), "2-d"),
        (lambda: minioptim.Muon([torch.zeros(3, requires_grad=True)]), "2-d"),
        (lambda: minioptim.Muon(matrix(), adjust_lr_fn="match_rms"), "adjust_lr_fn"),
        (lambda: minioptim.Muon(matrix(), ns_steps=100), "ns_steps"),
        (lambda: minioptim.Muon(matrix(), ns_coefficients=(1.0, 2.0)), "ns_coefficients"),
        (lambda: minioptim.Adam([{"params": params(), "lr": -1.0}]), "lr"),
        (lambda: minioptim.Adam(params(), impl="turbo"), "impl"),
        (lambda: minioptim.Adam(params(), differentiable=True), "differentiable"),
        (lambda: minioptim.AdamW([{"params": params(), "capturable": True}]), "capturable"),
        (lambda: minioptim.SGD(params(), capturable=True, precision="stochastic"), "captured"),
        (lambda: minioptim.Adam([]), "empty parameter list"),
        (lambda: minioptim.Adam([{"params": []}]), "empty parameter list"),
    ],
)
def test_invalid_hyperparameters_raise_value_error_naming_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_fused_and_foreach_together_raise_as_in_torch(name):
    with pytest.raises(RuntimeError, match="`fused` and `foreach` cannot be `True` together"):
        getattr(minioptim, name)(params(), fused=True, foreach=True)


@pytest.mark.parametrize(
    "options",
    [
        dict(lr=torch.tensor(1e-3), foreach=False),
        dict(lr=torch.tensor(1e-3), fused=True),
        dict(betas=(torch.tensor(0.9), torch.tensor(0.99))),
        dict(fused=True, foreach=False),
    ],
    ids=["tensor-lr", "tensor-lr-fused", "tensor-betas", "fused"],
)
def test_tensors_and_flags_that_torch_accepts_are_accepted(options):
    minioptim.Adam(params(), **options)


def test_duplicated_parameters_raise():
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="appears twice"):
        minioptim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        minioptim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (torch.zeros(3, dtype=torch.long), TypeError, "floating-point"),
        (torch.zeros(3, dtype=torch.complex64), TypeError, "floating-point"),
        ([1.0, 2.0], TypeError, "not a tensor"),
        (torch.zeros(3, requires_grad=True) * 2, ValueError, "leaf"),
    ],
)
def test_parameters_that_cannot_be_optimized_raise(bad, error, message):
    with pytest.raises(error, match=message):
        minioptim.Adam([bad] if isinstance(bad, torch.Tensor) else bad)


def test_a_single_tensor_or_a_group_with_a_set_is_rejected():
    with pytest.raises(TypeError, match="iterable"):
        minioptim.Adam(torch.zeros(3, requires_grad=True))
    with pytest.raises(TypeError, match="set"):  # a set has no order: state would be shuffled
        minioptim.Adam([{"params": {torch.zeros(3, requires_grad=True)}}])


@pytest.mark.parametrize("value", ["0.1", True, None], ids=["str", "bool", "None"])
def test_non_numeric_hyperparameter_raises_type_error(value):
    with pytest.raises(TypeError, match="lr must be a number"):
        minioptim.SGD(params(), lr=value)


def test_rejected_param_group_is_not_added():
    optimizer = minioptim.SGD(params(), lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        optimizer.add_param_group({"params": params(), "lr": -1.0})
    assert len(optimizer.param_groups) == len(optimizer.buckets) == 1


def test_failed_construction_leaves_parameters_untouched():
    p = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError):
        minioptim.SGD([p], lr=-1)
    assert p.grad is None
