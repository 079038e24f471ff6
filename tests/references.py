"""Per-tensor references written from each rule's definition, independently of minioptim.

Each is a plain ``torch.optim.Optimizer`` that loops over tensors and writes the equations
as they appear in the papers, so a bug in minioptim's flat rules cannot hide in them.
"""

import torch


class PlainSignSGD(torch.optim.Optimizer):
    """signSGD / Signum: m = beta m + (1 - beta) g, p <- p (1 - lr wd) - lr sign(u)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, weight_decay=0.0, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, beta, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                u = g
                if beta > 0:
                    state = self.state[p]
                    m = state.get("momentum_buffer", torch.zeros_like(p))
                    state["momentum_buffer"] = u = beta * m + (1 - beta) * g
                p.copy_(p * (1 - lr * wd) - lr * torch.sign(u))


class PlainLion(torch.optim.Optimizer):
    """Lion (Chen et al., 2023, Algorithm 2):

    c = beta1 m + (1 - beta1) g;  p <- p - lr (sign(c) + wd p);  m = beta2 m + (1 - beta2) g
    """

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False):
        defaults = dict(lr=lr, betas=betas, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                m = state.get("exp_avg", torch.zeros_like(p))
                c = beta1 * m + (1 - beta1) * g
                p.copy_(p - lr * (torch.sign(c) + wd * p))
                state["exp_avg"] = beta2 * m + (1 - beta2) * g


class PlainLAMB(torch.optim.Optimizer):
    """LAMB (You et al., 2020), per tensor, with bias correction and decoupled decay:

    m, v as in Adam;  r = m_hat / (sqrt(v_hat) + eps) + wd p;
    trust = ||p|| / ||r|| (1 where either norm is 0);  p <- p - lr trust r
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, wd=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"].item()
                g = p.grad
                state["exp_avg"] = m = beta1 * state["exp_avg"] + (1 - beta1) * g
                state["exp_avg_sq"] = v = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
                m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
                r = m_hat / (v_hat.sqrt() + group["eps"]) + group["wd"] * p
                w_norm, r_norm = p.norm(), r.norm()
                trust = w_norm / r_norm if w_norm > 0 and r_norm > 0 else 1.0
                p.sub_(group["lr"] * trust * r)
