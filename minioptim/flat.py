"""FlatBuffer: the parameters of one bucket packed into one contiguous tensor.

A bucket is the set of parameters of one param group that share a device and a dtype.
Its values live in one 1-d tensor ``param`` and its gradients in one 1-d tensor ``grad``;
every parameter's ``p.data`` and ``p.grad`` is a view of a slice of them::

    param:  [ p0 p0 p0 p0 | p1 p1 | p2 p2 p2 ... ]
    grad:   [ g0 g0 g0 g0 | g1 g1 | g2 g2 g2 ... ]
              offsets[0]    offsets[1]  ...

So an update written on ``param`` and ``grad`` updates every parameter at once, and
``grad.zero_()`` zeroes every gradient with one fill.

The views are only as good as the code around them: ``model.zero_grad()`` sets gradients
to ``None``, DDP and user code assign ``p.grad``, ``model.double()`` replaces ``p.data``.
:meth:`FlatBuffer.check_bindings` runs before every update, finds such changes with pointer
comparisons, and repairs them, or raises when a parameter can no longer live in the buffer.
"""

from __future__ import annotations

import itertools
import operator

import torch

GRAD = operator.attrgetter("grad")  # p.grad for each p in map(GRAD, params), at C speed


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim uses for its ``step`` counters."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class FlatBuffer:
    """One contiguous buffer for the values, gradients and state of a list of parameters.

    Parameters
    ----------
    params:
        Parameters of one device and one dtype. Their current values (and gradients, if
        any) are copied into the buffer; from then on ``p.data`` and ``p.grad`` are views.
    """

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = params
        self.device = params[0].device
        self.dtype = params[0].dtype
        self.offsets = [0, *itertools.accumulate(p.numel() for p in params)]
        size = self.offsets[-1]
        self.param = torch.empty(size, dtype=self.dtype, device=self.device)
        self.grad = torch.zeros(size, dtype=self.dtype, device=self.device)
        self.param_views = [self.slot(self.param, i) for i in range(len(params))]
        self.grad_views = [self.slot(self.grad, i) for i in range(len(params))]
        for p, value, grad in zip(params, self.param_views, self.grad_views, strict=True):
            value.copy_(p.detach())
            if p.grad is not None:
                grad.copy_(p.grad)
            p.data = value
            if self.wants_grad(p):
                p.grad = grad
        self.data_ptrs = [p.data_ptr() for p in params]
        # Optimizer state: flat tensors shaped like `param`, created on first use, and how
        # many updates each parameter's state has seen (0: no state yet). Like torch.optim,
        # the counters are float tensors on the CPU; state['step'] entries are views of them.
        self.state: dict[str, torch.Tensor] = {}
        self.steps = torch.zeros(len(params), dtype=scalar_dtype())

    def __len__(self) -> int:
        return len(self.params)

    def slot(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        """The slice of a flat tensor that belongs to parameter ``i``, shaped like it."""
        return flat[self.offsets[i] : self.offsets[i + 1]].view(self.params[i].shape)

    def state_buffer(self, name: str) -> torch.Tensor:
        """The flat state tensor ``name``, created filled with zeros on first use."""
        if name not in self.state:
            self.state[name] = torch.zeros_like(self.param)
        return self.state[name]

    # -- the binding check --------------------------------------------------------------

    def check_bindings(self, owner: str) -> list[bool]:
        """Make every ``p.data`` and ``p.grad`` a view of the buffer again.

        Returns, for each parameter, whether it has a gradient this step.

        - ``p.data`` replaced (``p.data = ...``, ``model.to()``/``.double()``, which replace
          ``p.data`` or swap the tensor): the new values are copied in and ``p.data``
          re-bound, if device, dtype and shape still fit; otherwise a ``RuntimeError``
          (never train an orphaned buffer).
        - ``p.grad`` is a tensor but not our view (``model.zero_grad()`` then ``backward``,
          DDP, ``p.grad = ...``): its values are copied into the slot and ``p.grad`` re-bound.
        - ``p.grad is None``: the parameter is skipped this step, as in torch.optim.

        When nothing changed this costs one pointer comparison per parameter.
        """
        params = self.params
        if list(map(torch.Tensor.data_ptr, params)) != self.data_ptrs:
            for i, p in enumerate(params):
                if p.data_ptr() != self.data_ptrs[i]:
                    self._readopt_data(i, owner)
        grads = list(map(GRAD, params))
        if all(map(operator.is_, grads, self.grad_views)):
            return [True] * len(params)
        has_grad = []
        for p, grad, view in zip(params, grads, self.grad_views, strict=True):
            if grad is not None and grad is not view:
                if grad.is_sparse:
                    raise RuntimeError(f"{owner} does not support sparse gradients")
                view.copy_(grad)
                p.grad = view
            has_grad.append(grad is not None)
        return has_grad

    def bind_grads(self) -> None:
        """Point every ``p.grad`` at its slot (after the slots were zeroed)."""
        for p, view in zip(self.params, self.grad_views, strict=True):
            if p.grad is not view and self.wants_grad(p):
                p.grad = view

    @staticmethod
    def wants_grad(p: torch.Tensor) -> bool:
        """Whether ``p.grad`` should be a view of the buffer: unless ``p`` is frozen.

        A frozen parameter (``requires_grad=False``, with no gradient assigned) keeps
        ``p.grad = None``, so the optimizer skips it, as torch.optim does, instead of
        applying weight decay or momentum to it.
        """
        return p.requires_grad or p.grad is not None

    def _readopt_data(self, i: int, owner: str) -> None:
        p, view = self.params[i], self.param_views[i]
        data = p.data
        if (data.device, data.dtype, data.shape) != (self.device, self.dtype, view.shape):
            raise RuntimeError(
                f"{owner}: parameter {i} of a group is now a {data.dtype} tensor of shape "
                f"{tuple(data.shape)} on {data.device}, but the optimizer holds it as "
                f"{self.dtype} of shape {tuple(view.shape)} on {self.device}. The model was "
                "moved, cast or resized after the optimizer was created. Create the optimizer "
                "after model.to(...) / .double() / .half(), or load its state_dict into a new "
                "optimizer."
            )
        view.copy_(data)
        p.data = view
        self.data_ptrs[i] = p.data_ptr()

    # -- which slices to update -----------------------------------------------------------

    def runs(self, has_grad: list[bool]) -> list[tuple[int, int, int]]:
        """Split the bucket into runs ``(first, end, step)`` to update with one call each.

        A run is a maximal range of consecutive parameters that have a gradient and whose
        state has seen the same number of ``step`` updates. Normally that is the whole
        bucket: one run. Parameters without a gradient are left out (torch.optim skips
        them), and parameters that skipped steps keep their own step count, so Adam's bias
        correction stays exact per parameter.
        """
        low, high = torch.aminmax(self.steps)
        if low == high and all(has_grad):
            return [(0, len(self), int(low))]
        steps = self.steps.tolist()
        runs = []
        first = 0
        for key, group in itertools.groupby(
            range(len(steps)), key=lambda i: (has_grad[i], steps[i])
        ):
            end = first + sum(1 for _ in group)
            if key[0]:
                runs.append((first, end, int(key[1])))
            first = end
        return runs
