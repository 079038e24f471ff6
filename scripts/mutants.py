"""The curated mutants that ``make mutate`` (``python -m scripts.mutate``) applies to minioptim.

Each entry is one realistic bug: in ``FILE`` (relative to ``minioptim/``) the exact text
``ORIGINAL``, which must occur exactly once, is replaced by ``REPLACEMENT``. The runner
reports a mutant whose original text is missing or ambiguous as an error, so when the
library changes, the list has to be updated instead of silently testing nothing.

A mutant that no test can kill because it does not change behaviour carries the argument
why in ``equivalent``; the runner still runs it and reports it as "equivalent" if it
survives (and as an error if it is killed: then the argument is wrong).

Add a mutant for every bug you fix or can imagine making: a wrong coefficient, an
off-by-one, a forgotten re-binding, a check that is one comparison too lenient.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    file: str  # relative to minioptim/
    original: str
    replacement: str
    description: str
    equivalent: str | None = None  # why no test can tell it apart, if it cannot


M = Mutant

MUTANTS = [
    # -- functional.py: SGD -----------------------------------------------------------------
    M(
        "functional.py",
        "        grad = grad.add(param, alpha=weight_decay)\n    if momentum != 0:",
        "        grad = grad.add(param, alpha=-weight_decay)\n    if momentum != 0:",
        "sgd_: weight decay with the wrong sign",
    ),
    M(
        "functional.py",
        "        if dampening != 0 and step == 1:\n            momentum_buffer.copy_(grad)",
        "        if dampening != 0 and step == 0:\n            momentum_buffer.copy_(grad)",
        "sgd_: the first step does not initialise the buffer with g (dampens it)",
    ),
    M(
        "functional.py",
        "momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)",
        "momentum_buffer.mul_(momentum).add_(grad, alpha=1 - momentum)",
        "sgd_: dampening confused with momentum (EMA instead of heavy ball)",
    ),
    M(
        "functional.py",
        "grad = grad.add(momentum_buffer, alpha=momentum) if nesterov else momentum_buffer",
        "grad = momentum_buffer.add(grad, alpha=momentum) if nesterov else momentum_buffer",
        "sgd_: Nesterov look-ahead with g and b swapped",
    ),
    M(
        "functional.py",
        "    if maximize:\n        grad = -grad\n    if weight_decay != 0:\n"
        "        grad = grad.add(param, alpha=weight_decay)\n    if momentum != 0:",
        "    if weight_decay != 0:\n        grad = grad.add(param, alpha=weight_decay)\n"
        "    if maximize:\n        grad = -grad\n    if momentum != 0:",
        "sgd_: maximize negates the weight decay too (applied after it)",
    ),
    # -- functional.py: Adam / AdamW --------------------------------------------------------
    M(
        "functional.py",
        "bias_correction2_sqrt = (1 - beta2**step) ** 0.5",
        "bias_correction2_sqrt = (1 - beta1**step) ** 0.5",
        "adam_: second bias correction with beta1",
    ),
    M(
        "functional.py",
        "bias_correction2_sqrt = (1 - beta2**step) ** 0.5",
        "bias_correction2_sqrt = 1 - beta2**step",
        "adam_: second bias correction without the square root",
    ),
    M(
        "functional.py",
        "denom = second_moment.sqrt().div_(bias_correction2_sqrt).add_(eps)",
        "denom = second_moment.sqrt().add_(eps).div_(bias_correction2_sqrt)",
        "adam_: eps added before the bias correction",
    ),
    M(
        "functional.py",
        "param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)",
        "param.addcdiv_(exp_avg, denom, value=-lr)",
        "adam_: first bias correction forgotten",
    ),
    M(
        "functional.py",
        "            param.mul_(1 - lr * weight_decay)\n        else:",
        "            param.mul_(1 - weight_decay)\n        else:",
        "adam_: AdamW decay not scaled by lr",
    ),
    M(
        "functional.py",
        "        if decoupled_weight_decay:\n            param.mul_(1 - lr * weight_decay)",
        "        if not decoupled_weight_decay:\n            param.mul_(1 - lr * weight_decay)",
        "adam_: Adam and AdamW weight decay swapped",
    ),
    M(
        "functional.py",
        "        second_moment = max_exp_avg_sq",
        "        second_moment = exp_avg_sq",
        "adam_: amsgrad maximum kept but not used",
    ),
    M(
        "functional.py",
        "    else:\n        exp_avg.lerp_(grad, 1 - beta1)",
        "    else:\n        exp_avg.lerp_(grad, beta1)",
        "adam_: first moment interpolates with beta1 instead of 1 - beta1",
    ),
    M(
        "functional.py",
        "exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)",
        "exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta1)",
        "adam_: second moment weighted with 1 - beta1",
    ),
    M(
        "functional.py",
        "exp_avg.lerp_(grad, 1 - beta1.to(param.device, param.dtype))",
        "exp_avg.lerp_(grad, 1 - beta1)",
        "adam_: a tensor beta1 used without moving it to the parameter's dtype",
    ),
    # -- functional.py: SignSGD / Signum ----------------------------------------------------
    M(
        "functional.py",
        "momentum_buffer.mul_(momentum).add_(grad, alpha=1 - momentum)",
        "momentum_buffer.mul_(momentum).add_(grad)",
        "sign_sgd_: Signum's EMA without (1 - mu) (same signs, wrong state)",
    ),
    M(
        "functional.py",
        "        param.mul_(1 - lr * weight_decay)\n"
        "    param.add_(torch.sign(direction), alpha=-lr)",
        "        param.mul_(1 - weight_decay)\n    param.add_(torch.sign(direction), alpha=-lr)",
        "sign_sgd_: decay not scaled by lr",
    ),
    M(
        "functional.py",
        "    if maximize:\n        grad = -grad\n    direction = grad\n",
        "    direction = grad\n    if maximize:\n        grad = -grad\n",
        "sign_sgd_: maximize ignored without momentum (direction taken before negation)",
    ),
    M(
        "functional.py",
        "param.add_(torch.sign(direction), alpha=-lr)",
        "param.add_(torch.sign(grad), alpha=-lr)",
        "sign_sgd_: the step uses the gradient's sign, not the momentum's",
    ),
    # -- functional.py: Lion ----------------------------------------------------------------
    M(
        "functional.py",
        "direction = torch.lerp(exp_avg, grad, 1 - beta1).sign_()",
        "direction = torch.lerp(exp_avg, grad, 1 - beta2).sign_()",
        "lion_: the step interpolates with beta2",
    ),
    M(
        "functional.py",
        "    direction = torch.lerp(exp_avg, grad, 1 - beta1).sign_()\n"
        "    if weight_decay != 0:\n        param.mul_(1 - lr * weight_decay)\n"
        "    param.add_(direction, alpha=-lr)\n    exp_avg.lerp_(grad, 1 - beta2)\n",
        "    exp_avg.lerp_(grad, 1 - beta2)\n"
        "    direction = torch.lerp(exp_avg, grad, 1 - beta1).sign_()\n"
        "    if weight_decay != 0:\n        param.mul_(1 - lr * weight_decay)\n"
        "    param.add_(direction, alpha=-lr)\n",
        "lion_: momentum updated before the step uses it",
    ),
    M(
        "functional.py",
        "    if weight_decay != 0:\n        param.mul_(1 - lr * weight_decay)\n"
        "    param.add_(direction, alpha=-lr)\n",
        "    param.add_(direction, alpha=-lr)\n"
        "    if weight_decay != 0:\n        param.mul_(1 - lr * weight_decay)\n",
        "lion_: decay applied after the sign step (decays the step too)",
    ),
    M(
        "functional.py",
        "    if maximize:\n        grad = -grad\n"
        "    direction = torch.lerp(exp_avg, grad, 1 - beta1).sign_()",
        "    direction = torch.lerp(exp_avg, -grad if maximize else grad, 1 - beta1).sign_()",
        "lion_: maximize negates the step's gradient but not the momentum's",
    ),
    # -- functional.py: Newton-Schulz, Muon's lr, Muon --------------------------------------
    M(
        "functional.py",
        "x = x.div(x.norm().clamp(min=eps))",
        "x = x.div(x.abs().max().clamp(min=eps))",
        "newton_schulz: normalised by the largest entry instead of the Frobenius norm",
    ),
    M(
        "functional.py",
        "torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True)",
        "torch.linalg.vector_norm(x, dim=-1, keepdim=True)",
        "newton_schulz (batched): each row normalised instead of each matrix",
    ),
    M(
        "functional.py",
        "tall = x.size(-2) > x.size(-1)",
        "tall = x.size(-2) < x.size(-1)",
        "newton_schulz: runs on the tall orientation",
    ),
    M(
        "functional.py",
        "poly = addmm(gram, gram, gram, beta=b, alpha=c)",
        "poly = addmm(gram, gram, gram, beta=c, alpha=b)",
        "newton_schulz: coefficients b and c swapped",
    ),
    M(
        "functional.py",
        "    for _ in range(steps):\n        gram = x @ x.mT",
        "    for _ in range(steps - 1):\n        gram = x @ x.mT",
        "newton_schulz: one iteration too few",
    ),
    M(
        "functional.py",
        "return lr * math.sqrt(max(1, rows / cols))",
        "return lr * math.sqrt(max(1, cols / rows))",
        "muon_lr: original scaling with rows and columns swapped",
    ),
    M(
        "functional.py",
        "return lr * (0.2 * math.sqrt(max(rows, cols)))",
        "return lr * (0.2 * math.sqrt(min(rows, cols)))",
        "muon_lr: match_rms_adamw with the smaller dimension",
    ),
    M(
        "functional.py",
        'if adjust_lr_fn is None or adjust_lr_fn == "original":',
        'if adjust_lr_fn == "original":',
        "muon_lr: adjust_lr_fn=None takes the match_rms_adamw branch",
    ),
    M(
        "functional.py",
        "direction = grad.lerp(momentum_buffer, momentum) if nesterov else momentum_buffer",
        "direction = momentum_buffer.lerp(grad, momentum) if nesterov else momentum_buffer",
        "muon momentum: Nesterov interpolation the wrong way round",
    ),
    M(
        "functional.py",
        "    momentum_buffer.lerp_(grad, 1 - momentum)\n    direction = grad.lerp(",
        "    momentum_buffer.lerp_(grad, momentum)\n    direction = grad.lerp(",
        "muon momentum: interpolates with mu instead of 1 - mu",
    ),
    M(
        "functional.py",
        "p.add_(orthogonal, alpha=-muon_lr(lr, adjust_lr_fn, shape))",
        "p.add_(orthogonal, alpha=-lr)",
        "muon_: per-shape learning rate forgotten",
    ),
    M(
        "functional.py",
        'for k in ("weight_decay", "momentum", "nesterov")',
        'for k in ("momentum", "weight_decay", "nesterov")',
        "fused_muon_: weight decay and momentum swapped in the positional call",
    ),
    M(
        "functional.py",
        "_orthogonalized(param, direction, layout, orthogonalize, True)",
        "_orthogonalized(param, momentum_buffer, layout, orthogonalize, True)",
        "fused_muon_: orthogonalizes the momentum, ignoring Nesterov",
    ),
    M(
        "functional.py",
        'p.add_(orthogonal, alpha=-muon_lr(lr, hyper["adjust_lr_fn"], shape))',
        'p.add_(orthogonal, alpha=-muon_lr(lr, hyper["adjust_lr_fn"], p.shape))',
        "fused_muon_: per-shape lr from p's shape: in one process the batch's (k, A, B),"
        " which ends in (A, B), the same number; under FSDP2 this process's rows (issue 21)",
    ),
    # -- functional.py: the fast paths ------------------------------------------------------
    M(
        "functional.py",
        "return {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in hyper.items()}",
        "return dict(hyper)",
        # The numbers are the same both ways (torch's tensor_lr overloads read the same
        # number); where the lr is read shows under capture: tests/test_capture.py.
        "_numbers: tensor hyper-parameters passed to the fused kernels unconverted",
    ),
    M(
        "functional.py",
        "        **_numbers(hyper),  # lr, momentum, dampening, weight_decay, nesterov, maximize\n"
        "    )\n    _wrote(param)",
        "        **_numbers(hyper),  # lr, momentum, dampening, weight_decay, nesterov, maximize\n"
        "    )",
        "fused_sgd_: the fused kernel's write is not reported to autograd",
    ),
    M(
        "functional.py",
        'is_first_step=hyper["dampening"] != 0 and bool(step == 1),',
        'is_first_step=hyper["dampening"] != 0 and bool(step == 0),',
        "fused_sgd_: the first step is not flagged (buffer dampened)",
    ),
    M(
        "functional.py",
        '[momentum_buffer] if hyper["momentum"] != 0 else [],',
        "[],",
        "fused_sgd_: momentum buffer not passed (no momentum in the fast path)",
    ),
    M(
        "functional.py",
        "kernel = torch._fused_adamw_ if decoupled_weight_decay else torch._fused_adam_",
        "kernel = torch._fused_adam_ if decoupled_weight_decay else torch._fused_adamw_",
        "fused_adam_: Adam and AdamW kernels swapped",
    ),
    M(
        "functional.py",
        "        step = torch.full((), float(step), device=param.device)",
        "        step = torch.full((), float(step + 1), device=param.device)",
        "fused_adam_: step count off by one (as if the kernel did not increment)",
    ),
    M(
        "functional.py",
        "beta1, beta2 = (float(beta) for beta in betas)",
        "beta2, beta1 = (float(beta) for beta in betas)",
        "fused_adam_: betas swapped",
    ),
    M(
        "functional.py",
        '[max_exp_avg_sq] if hyper["amsgrad"] else [],',
        "[],",
        "fused_adam_: amsgrad's state not passed",
    ),
    M(
        "functional.py",
        "return [slice(start, start + size) for start in range(0, flat.numel(), size)]",
        "return [slice(start, start + size - 1) for start in range(0, flat.numel(), size)]",
        "_blocks: the last element of every block skipped",
    ),
    M(
        "functional.py",
        'size = BLOCK if flat.device.type == "cpu" else max(flat.numel(), 1)',
        "size = max(flat.numel(), 1)",
        "_blocks: the whole slice as one block on the CPU too",
        equivalent="the blocked rules are elementwise: any split into blocks gives the same "
        "numbers; only the temporaries' size (memory, cache) changes, which bench measures",
    ),
    M(
        "functional.py",
        "buffer = momentum_buffer[block] if momentum_buffer is not None else None",
        "buffer = momentum_buffer",
        "fused_sign_sgd_: the whole momentum buffer for every block",
    ),
    M(
        "functional.py",
        "    for block in _blocks(param):\n        lion_(",
        "    for block in _blocks(param)[:1]:\n        lion_(",
        "fused_lion_: only the first block updated",
    ),
    # -- flat.py: packing and aliases -------------------------------------------------------
    M(
        "flat.py",
        "        return torch.from_dlpack(view)",
        "        return view",
        "alias: plain views, so every parameter shares the buffer's storage",
    ),
    M(
        "flat.py",
        "return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32",
        "return torch.float32",
        "scalar_dtype: step counters float32 even with a float64 default dtype",
    ),
    M(
        "flat.py",
        "                self.slot(self.grad, i).copy_(local(p.grad))",
        "                pass",
        "FlatBuffer: existing gradients not copied in at construction",
    ),
    M(
        "flat.py",
        "first_seen.setdefault(p.shape, i)",
        "first_seen[p.shape] = i",
        "FlatBuffer: shapes ordered by last appearance",
    ),
    M(
        "flat.py",
        "self.params = sorted(params, key=lambda p: first_seen[p.shape])",
        "self.params = list(params)",
        "FlatBuffer: same-shaped parameters not stored next to each other",
    ),
    M(
        "flat.py",
        "self.data_ptrs = [view.data_ptr() for view in self.param_views]",
        "self.data_ptrs = [p.data_ptr() for p in self.params]",
        "__setstate__: copied parameters taken as bound (never re-adopted)",
    ),
    # -- flat.py: the binding check ---------------------------------------------------------
    M(
        "flat.py",
        "        if list(map(torch.Tensor.data_ptr, params)) != self.data_ptrs:",
        "        if params[0].data_ptr() != self.data_ptrs[0]:",
        "check_bindings: only the first parameter's data checked",
    ),
    M(
        "flat.py",
        "and all(map(REQUIRES_GRAD, params)):",
        "and True:",
        "check_bindings: fast path ignores parameters frozen since zero_grad",
    ),
    M(
        "flat.py",
        "if grad is view and not p.requires_grad and not (changed and view.any()):",
        "if grad is None and not p.requires_grad and not (changed and view.any()):",
        "check_bindings: a parameter frozen since zero_grad is still updated",
    ),
    M(
        "flat.py",
        "if grad is view and not p.requires_grad and not (changed and view.any()):",
        "if grad is view and not p.requires_grad:",
        "check_bindings: a layer frozen after its backward is skipped (torch updates it)",
    ),
    M(
        "flat.py",
        "                if grad.is_sparse:\n"
        '                    raise RuntimeError(f"{owner} does not support sparse gradients")\n',
        "",
        "check_bindings: sparse gradients not rejected",
    ),
    M(
        "flat.py",
        "                fresh.append(grad)\n                p.grad = view\n",
        "                fresh.append(grad)\n",
        "check_bindings: a foreign gradient copied in, but p.grad not re-bound",
    ),
    M(
        "flat.py",
        "torch._foreach_copy_(stale, fresh)",
        "torch._foreach_copy_(fresh, stale)",
        "check_bindings: copies the buffer into the foreign gradients",
    ),
    M(
        "flat.py",
        "        view.copy_(data)\n        p.data = view",
        "        p.data = view",
        "_readopt_data: replaced p.data re-bound but its values lost",
    ),
    M(
        "flat.py",
        "        self.data_ptrs[i] = p.data_ptr()",
        "        pass",
        "_readopt_data: the new pointer not recorded (re-adopts at every step)",
        equivalent="data_ptrs[i] is the alias's pointer from the start (set in _attach and "
        "__setstate__ from the aliases) and re-adoption re-binds p.data to that same alias, "
        "so the value written equals the value there; test_views checks that steps after a "
        "re-adoption copy nothing",
    ),
    M(
        "flat.py",
        "if (data.device, data.dtype, data.shape) != (self.device, self.dtype, view.shape):",
        "if (data.device, data.dtype) != (self.device, self.dtype):",
        "_readopt_data: a resized parameter accepted",
    ),
    M(
        "flat.py",
        "wanted = view if p.requires_grad else None",
        "wanted = view",
        "bind_grads: frozen parameters get their alias back (decayed by zero gradients)",
    ),
    # -- flat.py: runs and step counting ----------------------------------------------------
    M(
        "flat.py",
        "if labels.count(labels[0]) == len(labels) and all(has_grad):",
        "if labels.count(labels[0]) == len(labels):",
        "runs: parameters without a gradient updated when step counts agree",
    ),
    M(
        "flat.py",
        "self._run(first, end, label + 1)",
        "self._run(first, end, min(labels) + 1)",
        "runs: every run gets the bucket's smallest step count",
    ),
    M(
        "flat.py",
        "consecutive(list(zip(has_grad, labels, strict=True)))",
        "consecutive(list(zip(has_grad, [labels[0]] * len(labels), strict=True)))",
        "runs: parameters with different step counts merged into one run",
    ),
    M(
        "flat.py",
        "self.steps[run.first : run.end].add_(1)",
        "self.steps[run.first : run.end + 1].add_(1)",
        "finish: counts the next parameter's step too",
    ),
    M(
        "flat.py",
        "fresh = [] if self.started_all(run) else self._fresh_ranges(run)",
        "fresh = []",
        "run_state: state not reset before a parameter's first update",
    ),
    M(
        "state.py",
        "            piece.fill_(self.init)\n",
        "            piece.zero_()\n",
        "run_state: state reset to zero instead of its declared init",
    ),
    M(
        "flat.py",
        "return state, new or bool(fresh)",
        "return state, new",
        "run_state: a parameter's first update does not publish its state",
    ),
    M(
        "flat.py",
        '                entry["step"] = self.steps[i]\n            entry.update(',
        '                entry["step"] = self.steps[i].clone()\n            entry.update(',
        "publish: state['step'] a copy, not the live counter",
    ),
    M(
        "flat.py",
        "key = (first, end)\n",
        "key = first\n",
        "layout: cached per first parameter only",
    ),
    M(
        "flat.py",
        "offsets = [offset - start for offset in self.offsets[first : end + 1]]",
        "offsets = self.offsets[first : end + 1]",
        "layout: offsets not relative to the run's slice",
    ),
    # -- flat.py: adoption of a loaded state ------------------------------------------------
    M(
        "flat.py",
        'self.steps[i] = float(entry["step"])',
        'self.steps[i - 1] = float(entry["step"])',
        "adopt: each restored step count written one slot early",
    ),
    M(
        "flat.py",
        "                entry[name] = self.state_entry(spec, i)\n",
        "",
        "adopt: state[p] keeps the loaded tensors instead of views of the flat state",
    ),
    M(
        "flat.py",
        "            else:\n                self.steps[i] = 1.0\n",
        "            else:\n                self.steps[i] = 0.0\n",
        "adopt: a torch.optim checkpoint without 'step' restarts at step 1",
    ),
    M(
        "flat.py",
        "self.steps[i] = 0 if saved is None or edited else saved",
        "self.steps[i] = 0",
        "adopt: saved step counts of parameters without state ignored",
    ),
    M(
        "flat.py",
        "if value.shape != view.shape:",
        "if value.numel() != view.numel():",
        "adopt: state of another shape with as many elements accepted",
    ),
    # -- layout.py --------------------------------------------------------------------------
    M(
        "layout.py",
        "return self.sum(flat * flat).sqrt_()",
        "return self.sum(flat * flat)",
        "Layout.norm: squared norms",
    ),
    M(
        "layout.py",
        "out = torch.zeros(len(self), dtype=flat.dtype, device=flat.device)",
        "out = torch.ones(len(self), dtype=flat.dtype, device=flat.device)",
        "Layout.sum: starts from one",
    ),
    M(
        "layout.py",
        "shapes = [()] * len(self)",
        "shapes = [(1,)] * len(self)",
        "Layout.views: per-parameter scalars as 1-element vectors",
    ),
    M(
        "layout.py",
        "return flat[start:stop].view(len(indices), *shape)",
        "return flat[start:stop].reshape(len(indices), *shape).clone()",
        "Layout.by_shape: copies instead of views (writes lost)",
    ),
    M(
        "layout.py",
        "ids.repeat_interleave(self.sizes, output_size=self.numel)",
        "ids.repeat(self.numel // len(self) + 1)[: self.numel]",
        "Layout.segment_ids: tiles the ids instead of repeating each (sum, norm, expand)",
    ),
    M(
        "layout.py",
        "for _, first, end in consecutive(self.param_shapes):",
        "for _, first, end in consecutive(self.shapes):",
        "Layout.by_shape of a state: batches by the state's shapes, not the parameters' (issue 18)",
    ),
    M(
        "state.py",
        "if self.when is not None and not self.when(param_shape):",
        "if False:",
        "State(when=...): every parameter keeps the state (issue 18)",
    ),
    M(
        "base.py",
        "        return self.step_in_state\n",
        "        return True\n",
        "keeps_step: every group shows a step entry (issue 18)",
    ),
    # -- base.py: stepping, routing, guardrails ---------------------------------------------
    M(
        "base.py",
        'fast = self.impl == "fast" and dtype in self._fast_dtypes_on(bucket.device)',
        'fast = self.impl == "fast"',
        "_update_run: fast_dtypes ignored (half precision on torch's fused CPU kernels)",
    ),
    M(
        "base.py",
        'if device.type == "cuda" and self.cuda_fast_dtypes is not None:',
        "if self.cuda_fast_dtypes is not None:",
        "_fast_dtypes_on: the CUDA dtypes used on the CPU too (half on the fused CPU kernels)",
    ),
    M(
        "base.py",
        "self.rule(self.rule.reference, group, param, grad, state, step, layout)",
        "self.rule(self.rule.reference, {**group, **self.defaults}, param, grad, state, step, "
        "layout)",
        "update: the reference path reads the defaults, not the param group",
    ),
    M(
        "base.py",
        "self.rule(self.rule.fast, group, param, grad, state, step, layout)",
        "self.rule(self.rule.fast, {**group, **self.defaults}, param, grad, state, step, layout)",
        "fast_update: the fast path reads the defaults, not the param group",
    ),
    M(
        "base.py",
        "        if result is not None:\n",
        "        if isinstance(result, int | float):\n",
        "guardrail: a returned tensor not reported",
    ),
    M(
        "base.py",
        'how = "replaced" if slices.get(key) is not tensor else "rebound .data of"',
        'how = "replaced" if key not in slices else "rebound .data of"',
        "guardrail: a replaced state tensor not detected",
    ),
    M(
        "base.py",
        "slices = StateSlices(state, type(self).__name__)",
        "slices = dict(state)",
        "guardrail: reading an undeclared state gives a bare KeyError (no declared names)",
    ),
    M(
        "base.py",
        "if param._version == version and param.numel() and not self.allow_unchanged_params:",
        "if param._version < version and param.numel() and not self.allow_unchanged_params:",
        "guardrail: an update that did not change param in place not detected",
    ),
    M(
        "flat.py",
        "        torch.autograd.graph.increment_version(self.params[run.first : run.end])\n",
        "",
        "_update_run: parameters' version counters not bumped (autograd misses the update)",
    ),
    M(
        "base.py",
        "            with torch.enable_grad():\n                loss = closure()",
        "            loss = closure()",
        "step: closure evaluated without grad",
    ),
    M(
        "base.py",
        "if new and (bucket_specs or self.keeps_step(group)):",
        "if new and bucket_specs:",
        "step: a stateless rule with step_in_state publishes no step",
    ),
    M(
        "base.py",
        'impl == "fast" or (impl == "auto" and has_fast_path) else "reference"',
        'impl in ("fast", "auto") else "reference"',
        "__init__: impl='auto' picks a fast path that does not exist",
    ),
    M(
        "base.py",
        'group = {**self.defaults, **param_group, "params": params}',
        'group = {**param_group, **self.defaults, "params": params}',
        "add_param_group: defaults override the group's own values",
    ),
    # -- base.py: zero_grad, state_dict, load_state_dict ------------------------------------
    M(
        "flat.py",
        "            for p in self.params:\n                p.grad = None",
        "            self.grad.zero_()",
        "zero_grad(set_to_none=True) zeroes instead (unused parameters then decay)",
    ),
    M(
        "flat.py",
        "            self.grad.zero_()\n            self.bind_grads()",
        "            self.grad.zero_()",
        "zero_grad: gradients set to None before are not re-bound",
    ),
    M(
        "base.py",
        "index: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in entry.items()}",
        "index: dict(entry)",
        "state_dict: live views instead of copies",
    ),
    M(
        "base.py",
        "for i, (group, p) in numbered if not self.keeps_step(group)]",
        "for i, (group, p) in numbered if self.keeps_step(group)]",
        "state_dict: step counts of optimizers without state['step'] not saved",
    ),
    M(
        "base.py",
        "state_dict[SAVED_STEPS] = {i: steps[id(p)] for i, p in without_step}",
        "state_dict[SAVED_STEPS] = {\n"
        "                i: float(s) for i, s in enumerate(\n"
        "                    s for b in self._all_buckets() for s in b.steps\n"
        "                )\n            }",
        "state_dict: saved step counts numbered in buffer order, not parameter order",
    ),
    M(
        "base.py",
        "saved = {id(params[int(i)]): s for i, s in state_dict.get(SAVED_STEPS, {}).items()}",
        "saved = {}",
        "load_state_dict: saved step counts ignored",
    ),
    M(
        "base.py",
        '            "_impl": self._impl,\n',
        "",
        "__getstate__: impl lost by deepcopy",
    ),
    # -- rule.py, state.py ------------------------------------------------------------------
    M(
        "rule.py",
        "        return value.squeeze()",
        "        return value",
        "hyper_value: a 1-element tensor passed on unsqueezed",
    ),
    M(
        "rule.py",
        "        return type(value)(hyper_value(v) for v in value)",
        "        return value",
        "hyper_value: tensors inside betas passed on unsqueezed",
    ),
    M(
        "state.py",
        'if spec.name == "step" or spec.name in seen:',
        "if spec.name in seen:",
        "declare: a state named 'step' accepted",
    ),
    M(
        "state.py",
        "        seen.add(spec.name)",
        "        pass",
        "declare: a state declared twice accepted",
    ),
    M(
        "state.py",
        "if isinstance(names, str) or not isinstance(names, tuple | list):",
        "if not isinstance(names, tuple | list | str):",
        "declare: a string accepted (one state per character)",
    ),
    M(
        "state.py",
        "            return torch.Size(self.shape(param_shape))",
        "            return param_shape",
        "State.shape_for: a shape function ignored",
    ),
    # -- validation: _checks.py and each class's check_group --------------------------------
    M(
        "_checks.py",
        "if value.numel() != 1 or not value.is_floating_point():",
        "if value.numel() != 1:",
        "number: integer tensors accepted",
    ),
    M(
        "_checks.py",
        "if isinstance(value, bool) or not isinstance(value, Real):",
        "if not isinstance(value, Real):",
        "number: booleans accepted as numbers",
    ),
    M(
        "_checks.py",
        "        if not value >= 0:",
        "        if value < 0:",
        "non_negative: NaN accepted",
    ),
    M(
        "_checks.py",
        "if value is None or not 0 <= value < 1:",
        "if value is None or not 0 <= value <= 1:",
        "unit_interval: 1 accepted",
    ),
    M(
        "_checks.py",
        "if not isinstance(pair, tuple | list) or len(pair) != 2:",
        "if not isinstance(pair, tuple | list) or len(pair) < 2:",
        "betas: three betas accepted",
    ),
    M(
        "_checks.py",
        "if isinstance(pair[0], torch.Tensor) != isinstance(pair[1], torch.Tensor):",
        "if isinstance(pair[0], torch.Tensor) and not isinstance(pair[1], torch.Tensor):",
        "betas: a float beta1 with a tensor beta2 accepted",
    ),
    M(
        "_checks.py",
        '    if not group.get("foreach"):\n        return',
        '    if group.get("foreach") is None:\n        return',
        "no_tensor_with_foreach: foreach=False refused like foreach=True",
    ),
    M(
        "_checks.py",
        'enumerate(group.get("betas", ()))',
        'enumerate(group.get("beta", ()))',
        "no_tensor_with_foreach: tensor betas with foreach=True accepted (a misspelt key)",
    ),
    M(
        "_checks.py",
        'if group.get("fused") and group.get("foreach"):',
        'if group.get("fused") and group.get("foreach") is None:',
        "fused_or_foreach: fused=True with foreach=True accepted",
    ),
    M(
        "adam.py",
        "        _checks.no_tensor_with_foreach(group, type(self).__name__)\n",
        "",
        "Adam.check_group: a tensor lr or betas with foreach=True accepted",
    ),
    M(
        "adam.py",
        "        _checks.fused_or_foreach(group)\n",
        "",
        "Adam.check_group: fused=True with foreach=True accepted",
    ),
    M(
        "sgd.py",
        "        _checks.fused_or_foreach(group)\n",
        "",
        "SGD.check_group: fused=True with foreach=True accepted",
    ),
    M(
        "sgd.py",
        'if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):',
        'if group["nesterov"] and (group["momentum"] < 0 or group["dampening"] != 0):',
        "SGD.check_group: Nesterov without momentum accepted",
    ),
    M(
        "sgd.py",
        'return ("momentum_buffer",) if group["momentum"] != 0 else ()',
        'return ("momentum_buffer",)',
        "SGD.state_names: a momentum buffer kept without momentum",
    ),
    M(
        "adam.py",
        '_checks.non_negative(group, "lr", "eps", "weight_decay")',
        '_checks.non_negative(group, "lr", "weight_decay")',
        "Adam.check_group: negative eps accepted",
    ),
    M(
        "adam.py",
        '            group["decoupled_weight_decay"] = True',
        "            pass",
        "AdamW.__setstate__: a loaded Adam state dict makes AdamW couple its decay",
    ),
    M(
        "sign_sgd.py",
        '        _checks.unit_interval(group, "momentum", group["momentum"])',
        "        pass",
        "SignSGD.check_group: momentum not checked",
    ),
    M(
        "sign_sgd.py",
        "    fast_dtypes = FLOAT_DTYPES\n    rule = Rule(sign_sgd_",
        "    fast_dtypes = FLOAT_DTYPES[2:]  # float32, float64\n    rule = Rule(sign_sgd_",
        "SignSGD: half precision routed to the reference path",
        equivalent="fused_sign_sgd_ runs sign_sgd_ itself on blocks of an elementwise rule, "
        "so both paths compute the same numbers in every dtype; only memory use differs",
    ),
    M(
        "lion.py",
        '        _checks.non_negative(group, "lr", "weight_decay")\n        _checks.betas(group)',
        '        _checks.non_negative(group, "lr", "weight_decay")',
        "Lion.check_group: betas not checked",
    ),
    M(
        "muon.py",
        "            if p.ndim != 2:",
        "            if p.ndim < 2:",
        "Muon.check_group: 3-d parameters accepted",
    ),
    M(
        "muon.py",
        'if group["adjust_lr_fn"] not in ADJUST_LR_FNS:',
        'if group["adjust_lr_fn"] not in (*ADJUST_LR_FNS, "match_rms"):',
        "Muon.check_group: an unknown adjust_lr_fn accepted (silently match_rms_adamw)",
    ),
    # -- issue 16: checkpoints and edits that must not be lost, refusals ---------------------
    M(
        "flat.py",
        "            p.data = value\n            if p.grad is not None:\n",
        "            p.data = value\n            if p.requires_grad or p.grad is not None:\n",
        "FlatBuffer: p.grad aliased at construction (issue 16: DCP then restores nothing)",
    ),
    M(
        "base.py",
        "        if isinstance(self.state, WatchedState) and not self.state.edited:\n",
        "        if isinstance(self.state, WatchedState):\n",
        "edits of optimizer.state ignored (issue 16)",
    ),
    M(
        "watched.py",
        "        super().__setitem__(key, value)\n        self._edited()\n",
        "        super().__setitem__(key, value)\n",
        "WatchedEntry: a replaced state tensor goes unnoticed (issue 16)",
    ),
    M(
        "flat.py",
        "        if not self.started_all(run):\n            self.started[run.first : run.end]",
        "        if self.started_all(run):\n            self.started[run.first : run.end]",
        "count: parameters never marked as having state: a zeroed step resets it (issue 16)",
    ),
    # -- capturable=True (issue 17): counts on the device, labels on the host --------------
    M(
        "flat.py",
        "label = next(self._fresh_label) if self.on_device else run.step",
        "label = run.step if self.on_device else run.step",
        "count: on the device the host's labels are counts, blind to replays (runs merge)",
    ),
    M(
        "flat.py",
        "        if self.steps._version != self._labelled_version:  # a count was written",
        "        if False:  # a count was written",
        'runs: a count written in place (state[p]["step"].zero_()) is not read again',
    ),
    M(
        "base.py",
        "            or self._optimizer_step_pre_hooks\n",
        "",
        "step: a registered step pre-hook not called (torch.optim's wrapper skipped)",
    ),
    M(
        "base.py",
        "            torch.autograd._profiler_enabled()\n            or",
        "            False\n            or",
        "step: no profiler range while a profiler runs (torch.optim's wrapper skipped)",
    ),
    M(
        "base.py",
        "        if not all(bucket.started_all(run) for bucket, run in runs):",
        "        if False:",
        "capture: a captured first step (it fills the state at every replay) is not refused",
    ),
    M(
        "base.py",
        "        if capturing and not self.capturable:",
        "        if False:",
        "capture: a step with host counts is captured (replays repeat its bias corrections)",
    ),
    M(
        "functional.py",
        "    if not isinstance(step, torch.Tensor):\n        step = torch.full(",
        "    if True:\n        step = torch.full(",
        "fused_adam_: a step on the device read back to the host (a capture cannot)",
    ),
    M(
        "flat.py",
        "                    if edited:\n                        raise KeyError(",
        "                    if edited and False:\n                        raise KeyError(",
        "adopt: an edited entry that lost a tensor keeps the old one silently (issue 16)",
    ),
    M(
        "base.py",
        '            if len(group["params"]) != sum(map(len, buckets)):',
        '            if len(group["params"]) < sum(map(len, buckets)):',
        "parameters appended to param_groups[i]['params'] ignored silently (issue 16)",
    ),
    M(
        "base.py",
        "            if device == other and start < end:",
        "            if device != other and start < end:",
        "parameters tied through .data accepted, then untied silently (issue 16)",
    ),
    M(
        "flat.py",
        "        elif problem is None and shared:",
        "        elif False:",
        "p.data re-pointed into a larger tensor (ZeRO bucket view) re-adopted (issue 16)",
    ),
    M(
        "flat.py",
        '    if data.device.type == "cpu" and data.is_shared():',
        '    if data.device.type == "cuda" and data.is_shared():',
        "parameters in shared memory (Hogwild) packed silently (issue 16)",
    ),
    # -- testing.py: the comparison harness (issue 23) -------------------------------------
    M(
        "testing.py",
        "            _close(p, q, where, rtol, atol)",
        "            _close(p, q, where, atol, rtol)",
        "harness: rtol and atol swapped for the parameters (issue 23)",
    ),
    M(
        "testing.py",
        'rtol, atol = tolerance(p.dtype)["rtol"], tolerance(p.dtype)["atol"]',
        'rtol, atol = tolerance(p.dtype)["atol"], tolerance(p.dtype)["rtol"]',
        "harness: the per-dtype tolerance read the wrong way round (issue 23)",
    ),
    M(
        "testing.py",
        'rtol, atol = tolerance(p.dtype)["rtol"], tolerance(p.dtype)["atol"]',
        'rtol, atol = tolerance(ours[0].dtype)["rtol"], tolerance(ours[0].dtype)["atol"]',
        "harness: every parameter at the first parameter's dtype tolerance (issue 23)",
    ),
    M(
        "testing.py",
        "    if ours.keys() != theirs.keys():",
        "    if ours.keys() - theirs.keys():",
        "harness: state entries missing from ours accepted (issue 23)",
    ),
    M(
        "testing.py",
        "    if ours.keys() != theirs.keys():",
        "    if len(ours) != len(theirs):",
        "harness: a renamed state entry accepted (only the counts compared) (issue 23)",
    ),
    M(
        "testing.py",
        "    ours = {k: v for k, v in ours.items() if v is not None}",
        "    ours = dict(ours)",
        "harness: a None state entry of ours counts as present (issue 23)",
    ),
    M(
        "testing.py",
        'exact=key == "step")',
        "exact=False)",
        "harness: step entries compared with the tolerance, not exactly (issue 23)",
    ),
    M(
        "testing.py",
        "    compare_state: bool = True,",
        "    compare_state: bool = False,",
        "harness: state not compared by default (issue 23)",
    ),
    M(
        "testing.py",
        "            if compare_state:\n",
        "            if True:\n",
        "harness: compare_state=False ignored (issue 23)",
    ),
    M(
        "testing.py",
        'f"{where}, state[{key!r}]"',
        "where",
        "harness: the error does not name the state entry that differs (issue 23)",
    ),
    M(
        "testing.py",
        '    elif param.grad is None or mode == "fresh":',
        "    elif param.grad is None:",
        "set_gradient: 'fresh' writes into the existing p.grad (issue 23)",
    ),
    M(
        "testing.py",
        "        param.grad = grad.clone()",
        "        param.grad = grad",
        "set_gradient: both optimizers get the same gradient tensor (issue 23)",
    ),
    M(
        "testing.py",
        "    if grad is None:\n        param.grad = None\n",
        "    if grad is None:\n        return\n",
        "set_gradient: a None gradient keeps the previous one (issue 23)",
    ),
    M(
        "testing.py",
        "            optimizer.zero_grad(set_to_none=True)",
        "            optimizer.zero_grad()",
        "harness: 'fresh' zero_grad without set_to_none on ours (issue 23)",
    ),
    M(
        "testing.py",
        "    if gradients not in GRADIENT_MODES:",
        '    if gradients == "":',
        "harness: an unknown gradients mode (a typo) runs as in_place (issue 23)",
    ),
    M(
        "testing.py",
        "    gen = torch.Generator().manual_seed(seed)\n    for step in range(1, steps + 1):",
        "    gen = torch.Generator().manual_seed(0)\n    for step in range(1, steps + 1):",
        "harness: the seed argument ignored (issue 23)",
    ),
    M(
        "testing.py",
        "    for step in range(1, steps + 1):\n        if gradients",
        "    for step in range(1, steps):\n        if gradients",
        "harness: one step fewer than asked (issue 23)",
    ),
    M(
        "testing.py",
        "        copy = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)\n"
        "        copies.append(copy.copy_(t.detach()).requires_grad_())",
        "        copies.append(t.detach().clone().requires_grad_())",
        "leaf_copies: clone() (a non-dense view's strides lost) (issue 23)",
    ),
    M(
        "testing.py",
        "    ours = leaf_copies(tensors)\n",
        "    ours = [t.detach().requires_grad_() for t in tensors]\n",
        "harness: ours trains the caller's tensors, not copies (issue 23)",
    ),
    M(
        "testing.py",
        "            _close(p, q, where, rtol, atol)",
        "            _close(q, p, where, rtol, atol)",
        "harness: rtol relative to ours, not to the reference (issue 23)",
    ),
    M(
        "testing.py",
        "        _close(value, theirs[key], ",
        "        _close(theirs[key], value, ",
        "harness: a state entry's rtol relative to ours, not to the reference (issue 23)",
    ),
    M(
        "testing.py",
        "copies.append(copy.copy_(t.detach()).requires_grad_())",
        "copies.append(copy.copy_(t).requires_grad_())",
        "leaf_copies: a tensor that requires grad copied into a non-leaf (issue 23)",
    ),
    # -- grade.py: the assignments' grader (issue 23) --------------------------------------
    M(
        "grade/trajectories.py",
        "RTOL = 1e-9\n",
        "RTOL = 1e-7\n",
        "grader: rtol loosened to 1e-7 (an lr passed through float32 passes some checks) "
        "(issue 23)",
    ),
    M(
        "grade/trajectories.py",
        "ATOL = 1e-12\n",
        "ATOL = 1e-8\n",
        "grader: atol loosened to 1e-8 (an Adagrad lr through float32 passes) (issue 23)",
    ),
    M(
        "grade/checks.py",
        "            rtol=RTOL,\n            atol=ATOL,\n",
        "            rtol=ATOL,\n            atol=RTOL,\n",
        "grader: the trajectory checks with rtol and atol swapped (issue 23)",
    ),
    M(
        "grade/trajectories.py",
        "    return size, not torch.allclose(a, b, rtol=RTOL, atol=ATOL)",
        "    return size, not torch.allclose(a, b)",
        "grader: compare()/trace mark differences at allclose's defaults, not the grader's "
        "tolerance (issue 23)",
    ),
    M(
        "grade/trajectories.py",
        'GRADIENTS = {"late": late_gradient, ',
        "GRADIENTS = {",
        "grader: the late checks give every parameter a gradient at every step (issue 23)",
    ),
    M(
        "grade/trajectories.py",
        "    return None if index == LATE and step <= LATE_STEPS else grad",
        "    return None if index == LATE and step < LATE_STEPS else grad",
        "grader: the late parameter's first update at step 4, not 5 as documented (issue 23)",
    ),
    M(
        "grade/assignments.py",
        '            _sgd("a late parameter", "late", momentum=0.9, dampening=0.5),',
        '            _sgd("a late parameter", "late", momentum=0.9),',
        "grader: SGD's late check without dampening (b = g either way: a late parameter's "
        "first step goes unchecked) (issue 23)",
    ),
    M(
        "grade/specs.py",
        '[{"params": params[:1], **group0}, {"params": params[1:]}]',
        '[{"params": params[:1]}, {"params": params[1:]}]',
        "grader: the two-groups checks give both groups the same hyper-parameters (issue 23)",
    ),
    M(
        "grade/checks.py",
        "                return Validation._rejects(cls, hyper, argument, later=True)",
        "                return None",
        "grader: check_group not checked in a param group added later (issue 23)",
    ),
    M(
        "grade/checks.py",
        '    return any(spelling.replace("_", " ") in said for spelling in spellings)',
        "    return bool(said)",
        "grader: a ValueError that does not name the argument accepted (issue 23)",
    ),
    M(
        "grade/assignments.py",
        '                    {"momentum": 0.0, "dampening": 1.0},',
        '                    {"momentum": 0.0, "dampening": 0.5},',
        "grader: the edge case dampening = 1 not checked as valid (issue 23)",
    ),
    M(
        "grade/assignments.py",
        '                    ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, '
        '"nesterov"),\n',
        "",
        "grader: nesterov with dampening not checked as invalid (issue 23)",
    ),
    M(
        "grade/checks.py",
        '            trainer = theirs if variant == "from torch" else mine',
        '            trainer = mine if variant == "from torch" else theirs',
        "grader: the checkpoint checks load the other optimizer's checkpoint (issue 23)",
    ),
    M(
        "grade/checks.py",
        "        if many.ops - few.ops >= slack:",
        "        if many.ops - few.ops > n_many - n_few:",
        "grader: the fused check lets one operation per parameter pass (issue 23)",
    ),
    M(
        "grade/checks.py",
        "            plain = Trajectory(spec, self.label, self.hyper)",
        "            plain = self",
        "grader: a variant's hint (late, groups, checkpoints) never given (issue 23)",
    ),
    M(
        "grade/assignments.py",
        '            _rmsprop("all", lr=0.02, centered=True',
        '            _rmsprop("all", centered=True',
        "grader: every RMSprop check at the default lr (an ignored lr passes) (issue 23)",
    ),
    M(
        "grade/assignments.py",
        '            _adagrad("lr decay", lr_decay=0.05),',
        '            _adagrad("lr decay", lr_decay=0.0),',
        "grader: the 'lr decay' check without lr decay (issue 23)",
    ),
    M(
        "grade/hints.py",
        '    if first.get("param", math.inf) < step:',
        "    if False:",
        "grader: the hint blames a state entry that differs only because the parameters "
        "did first (issue 23)",
    ),
    M(
        "grade/checks.py",
        "            if hyper[name] != off:",
        "            if hyper[name] == off:",
        "grader: a feature's hint never given (the switched-off retry never runs) (issue 23)",
    ),
    M(
        "grade/hints.py",
        "    if step == 1:\n        return (",
        "    if step <= 2:\n        return (",
        "grader: a state entry that agrees for one step blamed on its first update (issue 23)",
    ),
    M(
        "grade/report.py",
        "        return all(result.passed for result in self.results)",
        "        return any(result.passed for result in self.results)",
        "grader: an assignment passes when any check passes (issue 23)",
    ),
    # -- grade/: the gaps of issue 19 ---------------------------------------------------------
    M(
        "grade/trajectories.py",
        "    return grad.zero_() if step == 1 else grad",
        "    return grad",
        "grader: the zero check's first gradients are not zero (a first step detected "
        "from a zero buffer passes) (issue 19)",
    ),
    M(
        "grade/trajectories.py",
        "LARGE_FACTOR = 100.0",
        "LARGE_FACTOR = 1.0",
        "grader: the large check's parameter not enlarged (every trust ratio below 10: a "
        "ratio clipped at 10 passes) (issue 19)",
    ),
    M(
        "grade/checks.py",
        'CONVERSIONS = {"tolist", ',
        "CONVERSIONS = {",
        "grader: tolist not counted (a Python loop over w.tolist() passes) (issue 19)",
    ),
    M(
        "grade/checks.py",
        '    said = message.lower().replace("_", " ")',
        '    said = message.replace("_", " ")',
        "grader: the argument's name checked case-sensitively (torch's 'Nesterov momentum "
        "requires ...' rejected) (issue 19)",
    ),
    M(
        "grade/checks.py",
        "    if kept:\n            return GENERAL_HINTS",
        "    if False:\n            return GENERAL_HINTS",
        "grader: a state kept in attributes of its own not named in the hint (issue 19)",
    ),
    M(
        "grade/checks.py",
        "        hyper = {**spec.loop.hyper, **self.hyper}",
        "        hyper = {**spec.switches, **self.hyper}",
        "grader: a feature left at a nonzero default never switched off for a hint "
        "(LAMB's weight decay outside the ratio) (issue 19)",
    ),
    M(
        "grade/checks.py",
        '        first = CHECKPOINT_STEPS if self.variant in ("from torch", "to torch") else 0',
        "        first = 0",
        "grader: after a checkpoint the divergence's step counted from the load (issue 19)",
    ),
    M(
        "grade/hints.py",
        "    if math.isinf(rows[step - 1][entry][0]):",
        "    if False:",
        "grader: a state entry kept by only one blamed on its formula (issue 19)",
    ),
    M(
        "grade/hints.py",
        '    elif "changed grad in place" in message:',
        '    elif "changed grad in place" == message:',
        "grader: weight decay written into p.grad gets no hint (issue 19)",
    ),
    M(
        "grade/loops.py",
        "                b.add_(wd * p)",
        "                b.add_((1 - tau) * wd * p)",
        "grader: the weight-decay-in-buffer mistake damped (its hint never given) (issue 19)",
    ),
    M(
        "grade/loops.py",
        '        return q.clamp(max=10) if self.mistake == "clipped_trust_ratio" else q',
        "        return q",
        "grader: the clipped-trust-ratio mistake not made (its hint never given) (issue 19)",
    ),
    M(
        "grade/loops.py",
        "            m_hat, v_hat = m.div_(1 - beta1**t), v.div_(1 - beta2**t)",
        "            m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)",
        "grader: the in-place bias-correction mistake not made (issue 19)",
    ),
    # -- issue 23: the machinery around the update ------------------------------------------
    M(
        "sharded.py",
        "        torch._foreach_copy_(self.param_views, self.shards(self.params))\n",
        "",
        "ShardedBuffer: shard values copied in once, not before every update (issue 23)",
    ),
    M(
        "sharded.py",
        "            if set_to_none or not p.requires_grad:\n",
        "            if set_to_none:\n",
        "ShardedBuffer.zero_grad: a frozen layer keeps a zero gradient and decays (issue 23)",
    ),
    M(
        "sharded.py",
        "            torch._foreach_zero_(self.shards(grads))",
        "            pass",
        "ShardedBuffer.zero_grad: gradients not zeroed, they accumulate (issue 23)",
    ),
    M(
        "sharded.py",
        "        if spec.shape is not None:\n            return view",
        "        if True:\n            return view",
        "ShardedBuffer.state_entry: state shown as local shards, not DTensors (issue 23)",
    ),
    M(
        "sharded.py",
        "        self.grad_views = [self.slot(self.grad, i) for i in range(n)]",
        "        self.grad_views = [self.slot(self.param, i) for i in range(n)]",
        "ShardedBuffer: gradient slots are the value slots (issue 23)",
    ),
    M(
        "sharded.py",
        "        slots = [view for view, has in zip(self.grad_views, has_grad, strict=True)"
        " if has]",
        "        slots = self.grad_views[: sum(has_grad)]",
        "ShardedBuffer: gradients copied into the first slots, not their own (issue 23)",
    ),
    M(
        "sharded.py",
        "        shards = self.shards(self.params[run.first : run.end])\n",
        "        shards = self.shards(self.params[: run.end - run.first])\n",
        "ShardedBuffer.finish: a later run's values copied into the first shards (issue 23)",
    ),
    M(
        "sharded.py",
        "        self.count(run)\n        shards =",
        "        shards =",
        "ShardedBuffer.finish: steps not counted (bias correction stuck at step 1) (issue 23)",
    ),
    M(
        "flat.py",
        "            first_seen.setdefault(p.shape, i)",
        "            first_seen.setdefault(local(p).shape, i)",
        "FlatBuffer: ordered by the local shard's shape (FSDP2 ranks disagree) (issue 23)",
    ),
    M(
        "flat.py",
        "        torch.autograd.graph.increment_version(self.params[run.first : run.end])",
        "        torch.autograd.graph.increment_version(self.params[run.first + 1 : run.end])",
        "finish: the first parameter's version counter not bumped (issue 23)",
    ),
    M(
        "flat.py",
        "            new = new or spec.name not in self.state",
        "            new = new",
        "run_state: state that appears mid-training never reaches state_dict() (issue 23)",
    ),
    M(
        "base.py",
        "            for key, value in self.defaults.items():\n"
        "                group.setdefault(key, value)",
        "            pass",
        "load_state_dict: options missing from an older checkpoint not defaulted (issue 23)",
    ),
    M(
        "base.py",
        '        has_fast_path = rule_fast or self._overrides("fast_update")',
        "        has_fast_path = rule_fast",
        "a subclass's own fast_update not detected: impl='auto' runs update (issue 23)",
    ),
    M(
        "base.py",
        "if param._version == version and param.numel() and not self.allow_unchanged_params:",
        "if param._version == version and not self.allow_unchanged_params:",
        "zero-element runs raise 'did not change param in place' (issue 23)",
    ),
    M(
        "functional.py",
        "        x = x.div(torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True).clamp(min=eps))",
        "        x = x.div(torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True))",
        "newton_schulz: batched normalization without the eps clamp (0/0 = NaN) (issue 23)",
    ),
    M(
        "functional.py",
        "    if maximize:\n        grad = -grad\n    direction = grad\n",
        "    if maximize:\n        grad = grad.neg_()\n    direction = grad\n",
        "sign_sgd_: maximize negates p.grad itself (issue 23)",
    ),
    M(
        "muon.py",
        "            p = p[1] if isinstance(p, tuple) else p\n",
        "",
        "Muon.check_group: named parameters (name, tensor) refused (issue 23)",
    ),
    M(
        "lion.py",
        '        _checks.non_negative(group, "lr", "weight_decay")',
        '        _checks.non_negative(group, "lr")',
        "Lion.check_group: a negative weight decay accepted (issue 23)",
    ),
    M(
        "sharded.py",
        "        has_grad = [grad is not None for grad in grads]",
        "        has_grad = [True for grad in grads]",
        "ShardedBuffer: parameters without a gradient updated too (issue 23)",
    ),
    M(
        "sharded.py",
        "p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride()",
        "p.device_mesh, p.placements, run_check=False, shape=view.shape, stride=view.stride()",
        "ShardedBuffer.state_entry: the shard's shape given as the global one (issue 23)",
    ),
    # -- issue 21: Muon under FSDP2 ---------------------------------------------------------
    M(
        "sharded_muon.py",
        "        heapq.heappush(load, (work + newton_schulz_flops(shapes[i]), rank))",
        "        heapq.heappush(load, (work, rank))",
        "owners: the load is never counted, every matrix goes to rank 0 (issue 21)",
    ),
    M(
        "sharded_muon.py",
        "    chunk = -(-rows // world_size)",
        "    chunk = rows // world_size",
        "row_counts: rows per process rounded down, not up as torch.chunk (issue 21)",
    ),
    M(
        "sharded_muon.py",
        "torch.cat([received[source][k] for source in everyone])",
        "torch.cat([received[source][k] for source in reversed(everyone)])",
        "orthogonalized: the owner stacks the processes' rows in reverse order (issue 21)",
    ),
    M(
        "sharded_muon.py",
        "[result[i][first_row[i][dest] : first_row[i][dest + 1]] for i in mine]",
        "[result[i][first_row[i][rank] : first_row[i][rank] + rows[i][dest]] for i in mine]",
        "orthogonalized: every process gets the owner's rows of the result (issue 21)",
    ),
    M(
        "sharded_muon.py",
        "WIRE_DTYPE = torch.bfloat16",
        "WIRE_DTYPE = torch.float16",
        "matrices sent in float16, not Newton-Schulz's bfloat16 (issue 21)",
    ),
    M(
        "sharded_muon.py",
        "    _check_sharding(layout)\n",
        "",
        "orthogonalized: matrices sharded by columns not refused (issue 21)",
    ),
    M(
        "functional.py",
        "    if isinstance(layout, ShardedLayout):\n",
        "    if False:\n",
        "Muon: a sharded layout orthogonalizes each process's rows alone (issue 21)",
    ),
    M(
        "base.py",
        "            if bucket.sharded and not self.handles_shards:",
        "            if False:",
        "a layout rule that does not handle shards computes on them (issue 21)",
    ),
    # -- precision.py: the precision modes (issue 20) -----------------------------------------
    M(
        "precision.py",
        "        rounded = ((i + (bits & 0xFFFF)) & ~0xFFFF)",
        "        rounded = ((i + (bits & 0x7FFF)) & ~0xFFFF)",
        "precision: stochastic rounding to bfloat16 reads 15 random bits (biased low)",
    ),
    M(
        "precision.py",
        "        extra.copy_(w - param.float())  # c <- rn(w - p)",
        "        extra.copy_(param.float() - w)  # c <- rn(w - p)",
        "precision: Kahan's compensation with the wrong sign",
    ),
    M(
        "precision.py",
        '    if mode == "master":\n        w = extra\n',
        '    if mode == "master":\n        w = param.float()\n',
        "precision: master mode runs the rule on the rounded parameters",
    ),
    M(
        "precision.py",
        '                    if value.dtype != p.dtype and key != "step":',
        "                    if False:",
        "precision: a loaded float32 master weight keeps torch.optim's cast to bfloat16",
    ),
    M(
        "precision.py",
        "    k1 = mix32(h ^ (step & M32))",
        "    k1 = mix32(h)",
        "precision: stochastic rounding draws the same bits at every step",
    ),
    M(
        "precision.py",
        "                stale = values != master.to(bucket.dtype)",
        "                stale = values == values",
        "precision: a parameter written from outside replaces all its master weights' bits",
    ),
    M(
        "precision.py",
        "            yield self._work(bucket, run.start + lo,",
        "            yield self._work(bucket, run.start,",
        "precision: every piece of a run draws the first piece's random bits",
    ),
]
