"""The assignments: for each, the classes it asks for and its checks."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import Fused, Trajectory, Validation
from .specs import ADAGRAD_SPEC, LAMB_SPEC, RMSPROP_SPEC, SGD_SPEC, Spec


@dataclass(frozen=True)
class Assignment:
    title: str
    specs: tuple[Spec, ...]
    checks: tuple[Trajectory | Validation | Fused, ...]


def _sgd(label, variant=None, group0=None, **hyper):
    return Trajectory(SGD_SPEC, label, {"lr": 0.1, **hyper}, variant, group0)


def _rmsprop(label, variant=None, **hyper):
    return Trajectory(RMSPROP_SPEC, label, {"lr": 0.01, **hyper}, variant)


def _adagrad(label, variant=None, **hyper):
    return Trajectory(ADAGRAD_SPEC, label, {"lr": 0.1, **hyper}, variant)


def _lamb(label, variant=None, group0=None, **hyper):
    return Trajectory(LAMB_SPEC, label, {"lr": 0.01, **hyper}, variant, group0)


ASSIGNMENTS = {
    "assignment1": Assignment(
        "SGD with momentum, exactly as torch.optim.SGD",
        (SGD_SPEC,),
        (
            _sgd("heavy ball", momentum=0.9),
            _sgd("dampening", momentum=0.9, dampening=0.5),
            _sgd("Nesterov", momentum=0.9, nesterov=True),
            _sgd("weight decay", momentum=0.9, weight_decay=0.1),
            _sgd("all", momentum=0.8, dampening=0.3, weight_decay=0.05),
            _sgd("Nesterov, weight decay", momentum=0.9, nesterov=True, weight_decay=0.1),
            _sgd("no momentum", momentum=0.0, weight_decay=0.1),
            _sgd("a late parameter", "late", momentum=0.9, dampening=0.5),
            _sgd("a zero first gradient", "zero", momentum=0.9, dampening=0.5),
            _sgd("two groups", "groups", {"lr": 0.05, "momentum": 0.5}, momentum=0.9),
            Validation(
                SGD_SPEC,
                invalid=[
                    ({"lr": -0.1}, "lr"),
                    ({"momentum": -0.5}, "momentum"),
                    ({"momentum": 1.0}, "momentum"),
                    ({"momentum": 0.9, "dampening": -0.1}, "dampening"),
                    ({"momentum": 0.9, "dampening": 1.5}, "dampening"),
                    ({"weight_decay": -1e-4}, "weight_decay"),
                    ({"nesterov": True}, "nesterov"),
                    ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
                ],
                valid=[
                    {"lr": 0.0},
                    {"momentum": 0.0, "dampening": 1.0},
                    {"momentum": 0.99, "weight_decay": 0.0},
                    {"momentum": 0.9, "nesterov": True},
                ],
            ),
        ),
    ),
    "assignment2": Assignment(
        "RMSprop and Adagrad, exactly as torch.optim",
        (RMSPROP_SPEC, ADAGRAD_SPEC),
        (
            _rmsprop("plain"),
            _rmsprop("large eps", alpha=0.9, eps=1e-3),
            _rmsprop("centered", centered=True),
            _rmsprop("momentum", momentum=0.9),
            _rmsprop("weight decay", weight_decay=0.1),
            # (lr=0.02: the other checks use the default lr, 0.01)
            _rmsprop("all", lr=0.02, centered=True, momentum=0.9, weight_decay=0.1, eps=1e-4),
            _rmsprop("a late parameter", "late", centered=True, momentum=0.9),
            _rmsprop("from torch's checkpoint", "from torch", centered=True, momentum=0.9),
            _rmsprop("torch from yours", "to torch", centered=True, momentum=0.9),
            _adagrad("plain"),
            _adagrad("initial accumulator", initial_accumulator_value=0.5),
            _adagrad("lr decay", lr_decay=0.05),
            _adagrad("weight decay", weight_decay=0.1),
            _adagrad("large eps", eps=1e-3),
            _adagrad("all", lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.1),
            _adagrad(
                "from torch's checkpoint",
                "from torch",
                lr_decay=0.05,
                initial_accumulator_value=0.1,
            ),
            _adagrad("torch from yours", "to torch", lr_decay=0.05, weight_decay=0.1),
        ),
    ),
    "assignment3": Assignment(
        "LAMB with per-tensor trust ratios, fused",
        (LAMB_SPEC,),
        (
            _lamb("defaults"),
            _lamb("no weight decay", weight_decay=0.0),
            _lamb("strong weight decay", betas=(0.8, 0.99), weight_decay=0.1),
            _lamb("large eps", eps=1e-3),
            _lamb("a late parameter", "late", weight_decay=0.1),
            _lamb("a large parameter", "large"),
            _lamb("two groups", "groups", {"weight_decay": 0.0}, weight_decay=0.1),
            Fused(LAMB_SPEC, {"lr": 0.01}),
        ),
    ),
}
