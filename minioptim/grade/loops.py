"""Per-tensor references that can make the typical mistakes on purpose.

Each loop is the textbook form of an assignment's optimizer (a Python loop over the
parameters); ``mistake="..."`` makes it commit one typical mistake, and its
``mistakes`` maps each to the hint the grader gives a solution that does the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch


def scalar_dtype() -> torch.dtype:
    """The dtype of torch.optim's ``step`` entries."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class LoopOptimizer(torch.optim.Optimizer):
    """A textbook optimizer: a Python loop over the parameters, one tensor at a time.

    A subclass says which state it keeps (:meth:`state_init`) and how it updates one
    tensor (:meth:`update_one`), with torch.optim's state names, so it loads torch.optim's
    checkpoints. ``mistake`` makes it commit one of the typical mistakes listed in the
    class's ``mistakes`` (name -> the hint the grader gives when your optimizer does the
    same); ``None`` is the correct rule.
    """

    #: The typical mistakes this rule can make on purpose, and the hint for each.
    mistakes: ClassVar[dict[str, str]] = {}
    #: Whether the state has a ``step`` entry (torch.optim.SGD has none).
    step_in_state: ClassVar[bool] = True
    #: The hyper-parameters and their defaults, as in the assignment's signature.
    hyper: ClassVar[dict[str, Any]] = {}

    def __init__(self, params, mistake: str | None = None, **hyper: Any) -> None:
        unknown = set(hyper) - set(self.hyper)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}")
        if mistake is not None and mistake not in self.mistakes:
            raise ValueError(f"{type(self).__name__} has no mistake {mistake!r}")
        self.mistake = mistake
        self.counts: dict[int, int] = {}  # the step counts, if not in the state
        super().__init__(params, {**self.hyper, **hyper})

    def state_init(self, group: dict[str, Any]) -> dict[str, float]:
        """The state a parameter gets before its first update: name -> initial value."""
        return {}

    def new_state(self, group: dict[str, Any], p: torch.Tensor) -> dict[str, torch.Tensor]:
        """A parameter's state before its first update: tensors shaped like ``p``."""
        return {name: torch.full_like(p, value) for name, value in self.state_init(group).items()}

    def update_one(self, group, p, g, state, t) -> None:
        """Update one parameter ``p`` in place from its gradient ``g`` at step ``t``."""
        raise NotImplementedError

    def update_group(self, group, items: list[tuple]) -> None:
        """Update the parameters of one group; ``items`` holds ``(p, g, state, t)``."""
        for p, g, state, t in items:
            self.update_one(group, p, g, state, t)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            items = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(self.new_state(group, p))
                    if self.step_in_state:
                        state["step"] = torch.tensor(0.0, dtype=scalar_dtype())
                if self.step_in_state:
                    state["step"] += 1
                    t = int(state["step"])
                else:
                    t = self.counts[id(p)] = self.counts.get(id(p), 0) + 1
                items.append((p, p.grad, state, t))
            self.update_group(group, items)


class LoopSGD(LoopOptimizer):
    """``torch.optim.SGD`` as a loop (assignment 1's formulas), with typical mistakes."""

    step_in_state = False
    mistakes = {
        "damped_first_step": (
            "At a parameter's first update torch.optim.SGD sets the buffer to the "
            "gradient itself, b = g, without the factor (1 - dampening); a zero buffer "
            "updated as usual gives (1 - dampening) g. Use the step argument: copy g "
            "into the buffer when step == 1."
        ),
        "param_before_buffer": (
            "You step with the momentum buffer before updating it, i.e. with the "
            "previous step's buffer. Update the buffer first, b = momentum b + "
            "(1 - dampening) g, then step with the new b."
        ),
        "decoupled_weight_decay": (
            "Your weight decay is decoupled (p *= 1 - lr * weight_decay, or "
            "weight_decay * p added to the step after the buffer), but torch.optim.SGD "
            "couples it: g = g + weight_decay * p before g enters the buffer."
        ),
        "nesterov_without_momentum_factor": (
            "The Nesterov direction is g + momentum * b (with the updated buffer b), not g + b."
        ),
        "weight_decay_in_buffer": (
            "Weight decay belongs in the gradient, g = g + weight_decay * p, before the "
            "buffer update b = momentum b + (1 - dampening) g: dampening then scales it "
            "too, and the Nesterov direction g + momentum b includes it. You add "
            "weight_decay * p to the buffer on its own."
        ),
    }

    hyper = dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)

    def state_init(self, group):
        return {"momentum_buffer": 0.0} if group["momentum"] != 0 else {}

    def update_one(self, group, p, g, state, t):
        lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
        wd, mistake = group["weight_decay"], self.mistake
        raw = g
        if wd != 0 and mistake == "decoupled_weight_decay":
            p.mul_(1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        if mu == 0:
            d = g
        else:
            if mistake == "weight_decay_in_buffer":
                g = raw  # the decay goes into the buffer below, undamped
            b = state["momentum_buffer"]
            old = b.clone()
            if t == 1 and mistake != "damped_first_step":
                b.copy_(g)
            else:
                b.mul_(mu).add_((1 - tau) * g)
            if mistake == "weight_decay_in_buffer":
                b.add_(wd * p)
            if mistake == "param_before_buffer":
                b = old
            if group["nesterov"]:
                factor = 1 if mistake == "nesterov_without_momentum_factor" else mu
                d = g + factor * b
            else:
                d = b
        p.sub_(lr * d)


EPS_INSIDE = (
    "eps is inside the square root; torch.optim adds it outside: sqrt(v) + eps "
    "(centered: sqrt(v - grad_avg**2) + eps). The two differ most where v is small: "
    "at the first steps, and for small gradients."
)


class LoopRMSprop(LoopOptimizer):
    """``torch.optim.RMSprop`` as a loop (assignment 2's formulas), with typical mistakes."""

    mistakes = {
        "eps_inside_sqrt": EPS_INSIDE,
        "stale_square_avg": (
            "You divide by the square average before adding this step's g**2 to it. "
            "Update square_avg (and grad_avg) first, then use them."
        ),
        "decoupled_weight_decay": (
            "torch.optim.RMSprop couples weight decay: g = g + weight_decay * p before "
            "anything else, not p *= 1 - lr * weight_decay."
        ),
        "bias_correction": (
            "torch.optim.RMSprop does not bias-correct: divide by sqrt(v) + eps, "
            "not by sqrt(v / (1 - alpha**step)) + eps."
        ),
        "momentum_of_gradient": (
            "The momentum buffer accumulates the normalised step g / (sqrt(v) + eps), "
            "b = momentum b + g / (sqrt(v) + eps), not the raw gradient."
        ),
    }

    hyper = dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False)

    def state_init(self, group):
        names = ["square_avg"]
        names += ["momentum_buffer"] if group["momentum"] > 0 else []
        names += ["grad_avg"] if group["centered"] else []
        return dict.fromkeys(names, 0.0)

    def update_one(self, group, p, g, state, t):
        lr, alpha, eps, mistake = group["lr"], group["alpha"], group["eps"], self.mistake
        wd, mu = group["weight_decay"], group["momentum"]
        if wd != 0 and mistake == "decoupled_weight_decay":
            p.mul_(1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        v = state["square_avg"]
        old_v = v.clone()
        v.mul_(alpha).add_((1 - alpha) * g * g)
        if mistake == "stale_square_avg":
            v = old_v
        if mistake == "bias_correction":
            v = v / (1 - alpha**t)
        if group["centered"]:
            avg = state["grad_avg"]
            old_avg = avg.clone()
            avg.mul_(alpha).add_((1 - alpha) * g)
            if mistake == "stale_square_avg":
                avg = old_avg
            v = v - avg * avg
        s = (v + eps).sqrt() if mistake == "eps_inside_sqrt" else v.sqrt() + eps
        if mu > 0:
            b = state["momentum_buffer"]
            if mistake == "momentum_of_gradient":
                b.mul_(mu).add_(g)
                p.sub_(lr * b / s)
            else:
                b.mul_(mu).add_(g / s)
                p.sub_(lr * b)
        else:
            p.sub_(lr * g / s)


class LoopAdagrad(LoopOptimizer):
    """``torch.optim.Adagrad`` as a loop (assignment 2's formulas), with typical mistakes."""

    mistakes = {
        "eps_inside_sqrt": EPS_INSIDE.replace("(centered: sqrt(v - grad_avg**2) + eps)", ""),
        "lr_decay_off_by_one": (
            "The learning rate decays as lr / (1 + (step - 1) * lr_decay): the first "
            "update uses lr itself."
        ),
        "no_initial_accumulator": (
            "The sum starts at initial_accumulator_value, not at 0: declare "
            "State('sum', init=group['initial_accumulator_value'])."
        ),
        "decoupled_weight_decay": (
            "torch.optim.Adagrad couples weight decay: g = g + weight_decay * p before "
            "the sum, not p *= 1 - lr * weight_decay."
        ),
        "stale_sum": (
            "You divide by the sum before adding this step's g**2 to it. Update the sum "
            "first, then use it."
        ),
    }

    hyper = dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10)

    def state_init(self, group):
        if self.mistake == "no_initial_accumulator":
            return {"sum": 0.0}
        return {"sum": group["initial_accumulator_value"]}

    def update_one(self, group, p, g, state, t):
        lr, eps, wd, mistake = group["lr"], group["eps"], group["weight_decay"], self.mistake
        if wd != 0 and mistake == "decoupled_weight_decay":
            p.mul_(1 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        decays = t if mistake == "lr_decay_off_by_one" else t - 1
        clr = lr / (1 + decays * group["lr_decay"])
        total = state["sum"]
        old = total.clone()
        total.add_(g * g)
        if mistake == "stale_sum":
            total = old
        s = (total + eps).sqrt() if mistake == "eps_inside_sqrt" else total.sqrt() + eps
        p.sub_(clr * g / s)


SQRT_OF_CORRECTION = (
    "The second moment is corrected under the square root: sqrt(v_hat) = sqrt(v / (1 - "
    "beta2**step)) = sqrt(v) / sqrt(1 - beta2**step). Divide sqrt(v) by the square "
    "root of the correction, not by the correction itself nor by its fourth root."
)


class LoopLAMB(LoopOptimizer):
    """LAMB (You et al., 2020) as a loop over tensors: assignment 3's reference.

    The formulas are in this module's docstring. ``p.norm()`` and ``r.norm()`` are the
    per-tensor norms; the fused version computes all of them at once with
    ``layout.norm``.
    """

    mistakes = {
        "no_bias_correction": (
            "The bias correction is missing: m_hat = m / (1 - beta1**step), v_hat = "
            "v / (1 - beta2**step). The trust ratio hides the overall scale, but without "
            "the correction eps and the weight-decay term get the wrong weight."
        ),
        "coupled_weight_decay": (
            "Weight decay must be decoupled: add weight_decay * p to the Adam direction, "
            "r = m_hat / (sqrt(v_hat) + eps) + weight_decay * p, inside the trust ratio; "
            "not to the gradient before the moments."
        ),
        "weight_decay_outside_trust": (
            "The weight-decay term belongs inside the trust ratio: r = m_hat / "
            "(sqrt(v_hat) + eps) + weight_decay * p, and both the norm ||r|| and the "
            "step use that r."
        ),
        "global_trust_ratio": (
            "The trust ratio is per tensor: ||p_i|| / ||r_i|| for each parameter i, "
            "layout.norm(param) / layout.norm(r), not one ratio of the norms of the "
            "whole flat slice."
        ),
        "no_zero_norm_guard": (
            "A parameter whose norm is 0 (a bias initialised to zero) must get trust "
            "ratio 1, and so must one whose r is 0: with ||p|| / ||r|| alone it gets 0 "
            "and never moves. torch.where((w > 0) & (u > 0), w / u, 1) does it."
        ),
        "eps_inside_sqrt": (
            "eps is inside the square root; LAMB adds it outside: sqrt(v_hat) + eps."
        ),
        "stale_moments": (
            "You use the moments before adding this step's gradient to them. Update "
            "exp_avg and exp_avg_sq first, then compute r from them."
        ),
        "bias_correction_in_place": (
            "You divide exp_avg and exp_avg_sq by their bias corrections in place, so "
            "the state keeps the corrected moments and the next step corrects them "
            "again. Keep the state uncorrected and make new tensors: m_hat = m / (1 - "
            "beta1**step), v_hat = v / (1 - beta2**step)."
        ),
        "bias_correction_not_rooted": SQRT_OF_CORRECTION,
        "bias_correction_rooted_twice": SQRT_OF_CORRECTION,
        "clipped_trust_ratio": (
            "Your trust ratio is clipped at 10; the assignment's is not: q = ||p|| / "
            "||r|| (1 where a norm is 0), however large. Some LAMB implementations clip "
            "it; the check with a parameter 100 times larger shows the difference."
        ),
    }

    hyper = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)

    def state_init(self, group):
        return {"exp_avg": 0.0, "exp_avg_sq": 0.0}

    def new_state(self, group, p):
        # and the last trust ratio: one number per tensor, State("trust", shape=())
        return {**super().new_state(group, p), "trust": torch.zeros((), dtype=p.dtype)}

    def direction(self, group, p, g, state, t) -> torch.Tensor:
        """Update the moments and return r, the Adam direction plus weight decay."""
        (beta1, beta2), eps, wd = group["betas"], group["eps"], group["weight_decay"]
        mistake = self.mistake
        if mistake == "coupled_weight_decay":
            g = g + wd * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        old_m, old_v = m.clone(), v.clone()
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * g * g)
        if mistake == "stale_moments":
            m, v = old_m, old_v
        if mistake == "no_bias_correction":
            m_hat, v_hat = m, v
        elif mistake == "bias_correction_in_place":
            m_hat, v_hat = m.div_(1 - beta1**t), v.div_(1 - beta2**t)
        elif mistake == "bias_correction_not_rooted":  # sqrt(v) / (1 - beta2**t)
            m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t) ** 2
        elif mistake == "bias_correction_rooted_twice":  # sqrt(v) / (1 - beta2**t)**(1/4)
            m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t) ** 0.5
        else:
            m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        if mistake == "eps_inside_sqrt":
            r = m_hat / (v_hat + eps).sqrt()
        else:
            r = m_hat / (v_hat.sqrt() + eps)
        if mistake not in ("coupled_weight_decay", "weight_decay_outside_trust"):
            r = r + wd * p
        return r

    def trust_ratio(self, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """q = w / u, or 1 where w or u is 0."""
        if self.mistake == "no_zero_norm_guard":
            return w / u
        q = torch.where((w > 0) & (u > 0), w / u, torch.ones_like(w))
        return q.clamp(max=10) if self.mistake == "clipped_trust_ratio" else q

    def update_group(self, group, items):
        lr, wd = group["lr"], group["weight_decay"]
        directions = [self.direction(group, p, g, state, t) for p, g, state, t in items]
        params = [p for p, *_ in items]
        if self.mistake == "global_trust_ratio":
            w = torch.stack([p.norm() for p in params]).norm()
            u = torch.stack([r.norm() for r in directions]).norm()
            ratios = [self.trust_ratio(w, u)] * len(items)
        else:
            pairs = zip(params, directions, strict=True)
            ratios = [self.trust_ratio(p.norm(), r.norm()) for p, r in pairs]
        for (p, _, state, _), r, q in zip(items, directions, ratios, strict=True):
            state["trust"].copy_(q)
            if self.mistake == "weight_decay_outside_trust":
                p.sub_(lr * (q * r + wd * p))
            else:
                p.sub_(lr * q * r)


def with_mistake(loop: type[LoopOptimizer], mistake: str) -> Callable:
    def make(params, **hyper):
        return loop(params, **hyper, mistake=mistake)

    return make
