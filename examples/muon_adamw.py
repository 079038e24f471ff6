"""Muon for the hidden matrices and AdamW for the rest, as one optimizer.

Each param group says which rule it follows (``use_muon``). The update dispatches to the
public rules of :mod:`minioptim.functional` and their fused kernels, so both halves keep
the fast path, and each group keeps torch's state: Muon's groups no ``"step"`` entry
(``keeps_step``), AdamW's the usual one. Tested in tests/test_examples.py.
"""

from minioptim import FusedOptimizer
from minioptim.functional import adam_, fused_adam_, fused_muon_, muon_
from minioptim.rule import Rule

MUON = dict(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True, eps=1e-7, ns_steps=5,
            ns_coefficients=(3.4445, -4.7750, 2.0315), adjust_lr_fn=None)  # fmt: skip
ADAMW = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
             maximize=False, decoupled_weight_decay=True)  # fmt: skip


class MuonWithAdamW(FusedOptimizer):
    rules = {True: Rule(muon_, fast=fused_muon_), False: Rule(adam_, fast=fused_adam_)}

    def __init__(self, param_groups):
        groups = [{**(MUON if g["use_muon"] else ADAMW), **g} for g in param_groups]
        super().__init__(groups, {})

    def keeps_step(self, group):
        return not group["use_muon"]

    def state_names(self, group):
        return ("momentum_buffer",) if group["use_muon"] else ("exp_avg", "exp_avg_sq")

    def update(self, group, param, grad, state, step, layout):
        rule = self.rules[group["use_muon"]]
        rule(rule.reference, group, param, grad, state, step, layout)

    def fast_update(self, group, param, grad, state, step, layout):
        rule = self.rules[group["use_muon"]]
        rule(rule.fast, group, param, grad, state, step, layout)
