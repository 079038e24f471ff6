"""FusedOptimizer: a ``torch.optim.Optimizer`` whose updates run on whole flat buffers.

Each param group is split into buckets, one per (device, dtype); each bucket is a
:class:`~minioptim.flat.FlatBuffer`. An optimizer built on this class says two things:

- which per-parameter state it keeps (:meth:`FusedOptimizer.state_names`), and
- how to update one bucket (:meth:`FusedOptimizer.update`), written on flat tensors.

Everything else is done here, once for every optimizer: building the buffers, checking the
views before each step, skipping parameters without a gradient, counting steps,
``zero_grad``, and ``state_dict`` / ``load_state_dict`` in torch.optim's format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .flat import FlatBuffer

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
IMPLEMENTATIONS = ("auto", "reference", "fast")


class FusedOptimizer(torch.optim.Optimizer):
    """Base class of minioptim's optimizers; subclass it to write your own.

    A subclass passes its defaults to ``__init__`` and implements :meth:`update`, and
    :meth:`state_names` if it keeps state. A fused momentum SGD is::

        class Momentum(FusedOptimizer):
            def __init__(self, params, lr=0.01, beta=0.9):
                super().__init__(params, dict(lr=lr, beta=beta))

            def state_names(self, group):
                return ("velocity",)

            def update(self, group, param, grad, state, step):
                v = state["velocity"]               # flat, like param; zeros at step 1
                v.mul_(group["beta"]).add_(grad)    # v <- beta v + g
                param.add_(v, alpha=-group["lr"])   # p <- p - lr v

    Parameters
    ----------
    params:
        An iterable of tensors, or of dicts that each hold ``"params"`` and the group's
        hyper-parameters, exactly as for ``torch.optim``.
    defaults:
        Hyper-parameters used by groups that do not set them.
    impl:
        ``"reference"`` runs :meth:`update`, the readable rule; ``"fast"`` runs
        :meth:`fast_update` (same results within float rounding); ``"auto"`` (default)
        takes the fast path where the class has one. Buckets whose dtype is not in
        :attr:`fast_dtypes` always take the reference path.
    """

    #: Whether ``state_dict()`` shows a ``"step"`` entry per parameter (Adam does, SGD not).
    step_in_state: bool = True

    #: The dtypes :meth:`fast_update` is verified for. torch 2.13's fused CPU kernels give
    #: wrong results for float16/bfloat16 (``SGD(fused=True)`` does not move half-precision
    #: parameters at all), so by default half-precision buckets use :meth:`update`.
    fast_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)

    def __init__(self, params: Params, defaults: dict[str, Any], *, impl: str = "auto") -> None:
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
        has_fast_path = type(self).fast_update is not FusedOptimizer.fast_update
        if impl == "fast" and not has_fast_path:
            raise ValueError(f"impl='fast': {type(self).__name__} has no fast path")
        self.impl = "fast" if impl == "fast" or (impl == "auto" and has_fast_path) else "reference"
        self._buckets: list[list[FlatBuffer]] = []  # per param group, one per (device, dtype)
        if isinstance(params, torch.Tensor):
            raise TypeError(
                "params must be an iterable of tensors or of dicts, got a single tensor; "
                "pass [tensor] or model.parameters()"
            )
        super().__init__(params, defaults)

    # -- the extension API ----------------------------------------------------------------

    def state_names(self, group: dict[str, Any]) -> tuple[str, ...]:
        """Names of the per-parameter state tensors the update of ``group`` needs.

        Each becomes a flat tensor shaped like the bucket, filled with zeros before a
        parameter's first step, and shows up in ``state_dict()`` per parameter.
        """
        return ()

    def check_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError`` if a group's hyper-parameters are invalid (override to check)."""

    def update(
        self,
        group: dict[str, Any],
        param: torch.Tensor,
        grad: torch.Tensor,
        state: dict[str, torch.Tensor],
        step: int,
    ) -> None:
        """Update ``param`` in place from ``grad``: the optimizer's rule, on flat tensors.

        Parameters
        ----------
        group:
            The param group: read hyper-parameters here at every step (schedulers change them).
        param, grad:
            1-d views of the bucket's values and gradients (all parameters, or a run of them).
        state:
            The flat state tensors named by :meth:`state_names`, sliced like ``param``.
        step:
            The number of this update for these parameters: 1 on the first. Optimizers
            without state always get 0.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    def fast_update(
        self,
        group: dict[str, Any],
        param: torch.Tensor,
        grad: torch.Tensor,
        state: dict[str, torch.Tensor],
        step: int,
    ) -> None:
        """Optional faster version of :meth:`update` with the same results (``impl="fast"``)."""
        raise NotImplementedError

    # -- construction ---------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (as torch.optim does) and pack its parameters into buckets."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        params = param_group.get("params")
        if isinstance(params, torch.Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("params must be an ordered iterable (a list), not a set")
        params = list(params) if params is not None else []
        # (name, tensor) pairs, as from model.named_parameters(): torch.optim keeps the names
        # in group["param_names"] (its add_param_group below extracts them).
        self._check_params([p[1] if isinstance(p, tuple) else p for p in params])
        group = {**self.defaults, **param_group, "params": params}
        for flag in ("differentiable", "capturable"):
            if group.get(flag):
                raise ValueError(f"{flag}=True is not supported by minioptim; leave it False")
        self.check_group(group)
        super().add_param_group(group)
        by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in self.param_groups[-1]["params"]:
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        with torch.no_grad():
            self._buckets.append([FlatBuffer(ps) for ps in by_kind.values()])

    def _check_params(self, params: list) -> None:
        name = type(self).__name__
        if not params:
            raise ValueError(f"{name} got an empty parameter list: pass model.parameters()")
        seen = set()
        for i, p in enumerate(params):
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"{name}: params[{i}] is a {type(p).__name__}, not a tensor")
            if not p.is_floating_point():
                raise TypeError(
                    f"{name}: params[{i}] has dtype {p.dtype}; only floating-point parameters "
                    "can be optimized (complex ones: pass torch.view_as_real(p))"
                )
            if not p.is_leaf:
                raise ValueError(
                    f"{name}: params[{i}] is not a leaf tensor; optimize the tensor it was "
                    "computed from (or pass p.detach().requires_grad_())"
                )
            if id(p) in seen:
                raise ValueError(f"{name}: params[{i}] appears twice in the parameter list")
            seen.add(id(p))

    # -- stepping ---------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient.

        Parameters
        ----------
        closure:
            Optional function that re-evaluates the model and returns the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group, buckets in zip(self.param_groups, self._buckets, strict=True):
            names = self.state_names(group)
            for bucket in buckets:
                fast = self.impl == "fast" and bucket.dtype in self.fast_dtypes
                rule = self.fast_update if fast else self.update
                has_grad = bucket.check_bindings(type(self).__name__)
                new_state = any(name not in bucket.state for name in names)
                for first, end, done in bucket.runs(has_grad):
                    a, b = bucket.offsets[first], bucket.offsets[end]
                    state = {name: bucket.state_buffer(name)[a:b] for name in names}
                    if names and done == 0:
                        for tensor in state.values():
                            tensor.zero_()
                    step = done + 1 if names else 0
                    rule(group, bucket.param[a:b], bucket.grad[a:b], state, step)
                    if names:
                        bucket.steps[first:end] += 1
                        if done == 0 or new_state:
                            self._publish_state(bucket, range(first, end), names)
        return loss

    def _publish_state(self, bucket: FlatBuffer, indices: range, names: tuple[str, ...]) -> None:
        """Make ``self.state[p]`` hold views of the flat state, as torch.optim's state does.

        Called when state is created; views stay up to date by themselves after that.
        """
        for i in indices:
            entry = self.state[bucket.params[i]]
            if self.step_in_state:
                entry["step"] = bucket.steps[i]
            entry.update({name: bucket.slot(bucket.state[name], i) for name in names})

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every gradient: one fill per bucket.

        Unlike ``torch.optim`` (whose default is ``set_to_none=True``), gradients stay
        allocated, as views of the buffer, with value zero. A parameter that then receives
        no gradient still gets weight decay and momentum, exactly as in torch.optim with
        ``zero_grad(set_to_none=False)``; frozen parameters (``requires_grad=False``) keep
        ``p.grad = None`` and are skipped. Pass ``set_to_none=True`` for torch's behaviour:
        ``p.grad`` becomes ``None`` and the parameter is skipped until it gets a gradient.
        """
        for bucket in self._all_buckets():
            if set_to_none:
                for p in bucket.params:
                    p.grad = None
            else:
                bucket.grad.zero_()
                bucket.bind_grads()

    @property
    def buckets(self) -> tuple[tuple[FlatBuffer, ...], ...]:
        """The flat buffers, read-only: ``buckets[g]`` holds group ``g``'s, one per (device, dtype).

        Each :class:`~minioptim.flat.FlatBuffer` shows ``param`` and ``grad`` (the flat
        tensors), ``params`` (the parameters in buffer order), ``offsets`` and ``state``.
        """
        return tuple(tuple(buckets) for buckets in self._buckets)

    def _all_buckets(self) -> Iterable[FlatBuffer]:
        return (bucket for buckets in self._buckets for bucket in buckets)

    # -- checkpoints ------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim pickles defaults, state and param_groups; the buckets come along so
        # that copy.deepcopy(optimizer) gives a working optimizer over copied parameters.
        # Copied state tensors stay views of the copied flat state; copied parameters get
        # fresh storage, which the binding check re-adopts into the copied buffer at the
        # first step.
        return {**super().__getstate__(), "impl": self.impl, "_buckets": self._buckets}

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's format; tensors are copies, not views of the live buffers."""
        state_dict = super().state_dict()
        state_dict["state"] = {
            index: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
            for index, entry in state_dict["state"].items()
        }
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this class or of the matching torch.optim optimizer.

        torch.optim's loader matches parameters by position and casts state to each
        parameter's device and dtype; the values are then copied into the flat state.
        """
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        with torch.no_grad():
            for bucket in self._all_buckets():
                self._adopt_state(bucket)

    def _adopt_state(self, bucket: FlatBuffer) -> None:
        for i, p in enumerate(bucket.params):
            entry = self.state.get(p)
            tensors = {
                k: v
                for k, v in (entry or {}).items()
                if k != "step" and isinstance(v, torch.Tensor)
            }
            if not tensors and (not entry or "step" not in entry):
                bucket.steps[i] = 0
                continue
            for name, value in tensors.items():
                if value.shape != p.shape:
                    raise ValueError(
                        f"state[{name!r}] of a parameter of shape {tuple(p.shape)} has shape "
                        f"{tuple(value.shape)}: the state_dict belongs to another model"
                    )
                view = bucket.slot(bucket.state_buffer(name), i)
                view.copy_(value)
                entry[name] = view
            bucket.steps[i] = float(entry["step"]) if "step" in entry else 1.0
            if self.step_in_state:
                entry["step"] = bucket.steps[i]
            else:
                entry.pop("step", None)
