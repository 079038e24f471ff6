"""FusedOptimizer: a ``torch.optim.Optimizer`` whose updates run on whole flat buffers.

Each param group is split into buckets, one per (device, dtype); each bucket is a
:class:`~minioptim.flat.FlatBuffer`. An optimizer built on this class says two things:

- which per-parameter state it keeps (:meth:`FusedOptimizer.state_names`), and
- how to update one bucket (:meth:`FusedOptimizer.update`), written on flat tensors.

Everything else is done here and in the buckets, once for every optimizer: building the
buffers, checking the aliases before each step, skipping parameters without a gradient,
counting steps, checking that the update worked in place, ``zero_grad``, and
``state_dict`` / ``load_state_dict`` in torch.optim's format.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import itertools
from collections.abc import Callable, Iterable
from numbers import Real
from typing import Any

import torch
from torch.optim import optimizer as optimizer_hooks

from .compiled import CompiledRule, as_tensor, compiled
from .flat import DTensor, FlatBuffer, Run, unmovable
from .functional import clip_grad_norm_
from .layout import Layout
from .precision import NAMES as PRECISION_NAMES
from .precision import SAVED as SAVED_PRECISION
from .precision import Precision, compiled_fused, drop_unused, restore_uncast, salt
from .rule import Rule
from .sharded import ShardedBuffer
from .state import State, StateSlices, declare
from .watched import WatchedState

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
IMPLEMENTATIONS = ("auto", "reference", "fast", "compiled")
#: Every floating-point dtype a parameter can have (for rules that are right in all of them).
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SAVED_STEPS = "minioptim_steps"  # state_dict() key of the step counts, if not in "state"
#: Where ``impl="auto"`` runs the compiled rule: device type -> the package its generated
#: kernels need. On an H200 the compiled Adam rule reached 96-100 % of copy bandwidth and
#: torch's fused kernel 83 % (README, "Which path impl='auto' takes"); on a CPU the fused
#: kernels were as fast or faster, and a CPU install needs no compiler.
AUTO_COMPILED = {"cuda": "triton"}
SHARDED_CLIPPING = (
    "{owner}: max_grad_norm under FSDP2 would clip each process's shards by the norm of "
    "its own shards, not by the model's norm. Leave max_grad_norm unset and clip before "
    "step() with torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm), which "
    "computes the global norm of sharded gradients"
)
CAPTURE_ERROR = (
    "{owner}.step() was called while a CUDA graph is being captured, but the optimizer keeps "
    "its step counts on the host, so every replay would repeat the captured step's bias "
    "corrections: silently wrong updates. Create it with capturable=True (step counts on "
    "the device), or capture the forward and backward only and call optimizer.step() "
    "outside the graph."
)
CAPTURE_FIRST_STEP = (
    "{owner}.step() was captured before the parameters' first update: the first step fills "
    "the optimizer state with its initial values, and every replay would fill it again. "
    "Run a few eager steps first (warm-up, on a side stream, as torch.cuda.graph's "
    "documentation shows), then capture."
)
CAPTURE_HOST_VALUES = (
    "{owner}.prepare() returned Python numbers ({names}) while step() was captured in a CUDA "
    "graph: each replay would use the captured step's values. Compute per-step values as "
    "tensors on the parameters' device, or do not capture this optimizer's step."
)
CAPTURE_HOST_READ = (
    "{owner}.{method}() read a value from the device on the host while step() was captured "
    "in a CUDA graph, which a capture forbids ({error}). Capturable rules take `step` and a "
    "tensor lr as 0-d device tensors and never convert them to Python numbers: with "
    "impl='compiled' (impl='auto' on CUDA) a rule is compiled into kernels that read them on "
    "the device; Python branches on step or min(lr, ...) of a tensor cannot be captured."
)


def observed_only_when_watched(step: Callable[..., Any]) -> Callable[..., Any]:
    """``step`` wrapped as torch.optim wraps it (a profiler range, the step hooks), but only
    while a profiler runs or a hook is registered: the range alone costs about 25 µs of
    host time per step (measured on the course CPU: 78 µs against 53 µs for a step of 10
    tensors), a third of a fused step."""
    observed = torch.optim.Optimizer.profile_hook_step(step)

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        watched = (
            torch.autograd._profiler_enabled()
            or self._optimizer_step_pre_hooks
            or self._optimizer_step_post_hooks
            or optimizer_hooks._global_optimizer_pre_hooks
            or optimizer_hooks._global_optimizer_post_hooks
        )
        return observed(self, *args, **kwargs) if watched else step(self, *args, **kwargs)

    return wrapper


@functools.cache
def installed(package: str) -> bool:
    """Whether ``package`` can be imported (looked up once)."""
    return importlib.util.find_spec(package) is not None


@functools.cache
def takes_layout(update: Callable) -> bool:
    """Whether an ``update`` method declares a ``layout`` argument (looked up once)."""
    return "layout" in inspect.signature(update).parameters


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
                v = state["velocity"]  # flat; zeros at step 1
                v.mul_(group["beta"]).add_(grad)  # v <- beta v + g
                param.add_(v, alpha=-group["lr"])  # p <- p - lr v

    A rule that needs the parameters' shapes (Muon, LAMB, per-tensor clipping) adds a
    ``layout`` argument: ``def update(self, group, param, grad, state, step, layout)``
    receives a :class:`~minioptim.Layout` of the slice.

    Parameters
    ----------
    params:
        An iterable of tensors, or of dicts that each hold ``"params"`` and the group's
        hyper-parameters, exactly as for ``torch.optim``.
    defaults:
        Hyper-parameters used by groups that do not set them.
    impl:
        ``"reference"`` runs :meth:`update`, the readable rule; ``"fast"`` runs
        :meth:`fast_update` (same results within float rounding). Buckets whose dtype is
        not in :attr:`fast_dtypes` always take the reference path. ``"compiled"`` runs the
        reference rule (or this class's :meth:`update`) compiled by ``torch.compile``
        into one fused loop per bucket (:mod:`minioptim.compiled`). ``"auto"`` (default)
        takes the compiled rule for buckets on a device listed in
        ``minioptim.base.AUTO_COMPILED`` (CUDA, with Triton installed) when the rule
        takes no layout, and elsewhere the fast path where the class has one.
    max_grad_norm:
        If set, the gradients of each group are clipped to this total norm before its
        updates (:meth:`prepare`); it becomes a default of every group.
    precision:
        How float16/bfloat16 parameters are updated: ``"plain"`` (default), ``"master"``
        (float32 master weights), ``"stochastic"`` (stochastic rounding), ``"kahan"``
        (compensated updates), or a :class:`~minioptim.Precision`; see
        :mod:`minioptim.precision`. :meth:`update` is the same in every mode.
    capturable:
        If True, ``step()`` may be captured in a CUDA graph (``torch.cuda.graph``) after a
        few eager steps: the step counts live on the parameters' device and
        :meth:`update` receives ``step`` as a 0-d tensor there. A float ``lr`` is
        captured as a constant, as in torch.optim; to schedule it, pass ``lr`` as a
        tensor. What cannot be captured raises instead of replaying wrong steps.
    """

    #: Whether ``state_dict()`` shows a ``"step"`` entry per parameter (Adam does, SGD not).
    #: Either way ``update`` gets the true step count and checkpoints keep it.
    step_in_state: bool = True

    #: The dtypes :meth:`fast_update` is verified for. torch 2.13's fused CPU kernels give
    #: wrong results for float16/bfloat16 (``SGD(fused=True)`` does not move half-precision
    #: parameters at all), so by default half-precision buckets use :meth:`update`.
    fast_dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)

    #: The dtypes :meth:`fast_update` takes on CUDA, if other than :attr:`fast_dtypes`: torch's
    #: fused kernels update float16/bfloat16 correctly there (computing in float32), so
    #: SGD and Adam set all four; the CPU bug above is CPU-only.
    cuda_fast_dtypes: tuple[torch.dtype, ...] | None = None

    #: A built-in optimizer's update, declared as functions (see :class:`~minioptim.rule.Rule`);
    #: a subclass may instead override :meth:`update` (and :meth:`fast_update`).
    rule: Rule | None = None

    #: ``update`` must change ``param`` in place at every call, or the step raises (it
    #: catches ``param = param - lr * v``). A rule that deliberately leaves the parameters
    #: unchanged on some steps (say, it only accumulates statistics) sets this to True.
    allow_unchanged_params: bool = False

    #: Under FSDP2 an update that takes a ``layout`` gets a
    #: :class:`~minioptim.sharded.ShardedLayout` of this process's shards. Only a rule
    #: written for that (Muon: :mod:`minioptim.sharded_muon`) sets this to True; the
    #: others refuse sharded parameters rather than compute on a shard as if it were whole.
    handles_shards: bool = False

    def __init__(
        self,
        params: Params,
        defaults: dict[str, Any],
        *,
        impl: str = "auto",
        max_grad_norm: float | None = None,
        precision: str | Precision = "plain",
        capturable: bool = False,
    ) -> None:
        self.precision = Precision.of(precision)
        self.capturable = bool(capturable)
        if self.capturable and self.precision.mode == "stochastic":
            raise ValueError(
                "precision='stochastic' draws its random bits from the step count on the host, "
                "so it cannot be captured: use capturable=False, or precision='master' or 'kahan'"
            )
        if max_grad_norm is not None:
            defaults = {**defaults, "max_grad_norm": max_grad_norm}
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
        rule_fast = self.rule is not None and self.rule.fast is not None
        has_fast_path = rule_fast or self._overrides("fast_update")
        if impl == "fast" and not has_fast_path:
            raise ValueError(f"impl='fast': {type(self).__name__} has no fast path")
        self.impl = "fast" if impl == "fast" or (impl == "auto" and has_fast_path) else "reference"
        if impl == "compiled":
            self.impl = "compiled"
        self.auto = impl == "auto"  # the path may depend on the device (AUTO_COMPILED)
        self._check_update_signatures()
        self._buckets: list[list[FlatBuffer]] = []  # per param group, one per (device, dtype)
        if isinstance(params, torch.Tensor):
            raise TypeError(
                "params must be an iterable of tensors or of dicts, got a single tensor; "
                "pass [tensor] or model.parameters()"
            )
        super().__init__(params, defaults)
        self.state = WatchedState()

    # -- the extension API ----------------------------------------------------------------

    def state_names(self, group: dict[str, Any]) -> tuple[str | State, ...]:
        """The per-parameter state the update of ``group`` keeps: a tuple of names.

        A name ``"velocity"`` is a tensor shaped like the parameter that holds zeros before
        the parameter's first update. A :class:`~minioptim.State` sets another initial
        value or shape: ``State("sum", init=0.1)``, ``State("trust", shape=())`` (one
        number per parameter). Each shows up in ``state_dict()`` per parameter.
        """
        return ()

    def check_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError`` if a group's hyper-parameters are invalid (override to check)."""

    def keeps_step(self, group: dict[str, Any]) -> bool:
        """Whether ``state_dict()`` shows a ``"step"`` entry for the parameters of ``group``.

        The default is the class's :attr:`step_in_state`. An optimizer whose groups follow
        different rules (Muon for the matrices, AdamW for the rest, each with torch's
        state names) answers per group.
        """
        return self.step_in_state

    def update(
        self,
        group: dict[str, Any],
        param: torch.Tensor,
        grad: torch.Tensor,
        state: dict[str, torch.Tensor],
        step: int,
        layout: Layout | None = None,
    ) -> None:
        """Update ``param`` in place from ``grad``: the optimizer's rule, on flat tensors.

        Called once per step for each *run* of a bucket: normally the whole bucket (all
        parameters of one group, device and dtype); parameters without a gradient, or
        with another step count, form separate runs. So never loop over
        ``group["params"]`` here: the other parameters get their own call.

        Parameters
        ----------
        group:
            The param group: read hyper-parameters here at every step (schedulers change them).
        param, grad:
            1-d views of the run's values and gradients. Update ``param`` in place
            (``param.add_(...)``, not ``param = ...``) and return nothing.
        state:
            The flat state tensors named by :meth:`state_names`, sliced like ``param``
            (one entry per parameter for ``State(..., shape=())``). Update them in place;
            replacing one (``state["v"] = ...``) raises.
        step:
            The number of this update for these parameters: 1 on the first, whether the
            optimizer keeps state or not; it survives ``state_dict()`` round trips. With
            ``capturable=True`` it is a 0-d tensor on the parameters' device.
        layout:
            Only passed to an ``update`` that declares it: which parameters the slice
            holds, their offsets and shapes, per-parameter views and reductions.
        """
        if self.rule is None:
            raise NotImplementedError(f"{type(self).__name__} must implement update()")
        self.rule(self.rule.reference, group, param, grad, state, step, layout)

    def fast_update(
        self,
        group: dict[str, Any],
        param: torch.Tensor,
        grad: torch.Tensor,
        state: dict[str, torch.Tensor],
        step: int,
        layout: Layout | None = None,
    ) -> None:
        """Optional faster version of :meth:`update` with the same results (``impl="fast"``)."""
        if self.rule is None or self.rule.fast is None:
            raise NotImplementedError(f"{type(self).__name__} has no fast_update()")
        self.rule(self.rule.fast, group, param, grad, state, step, layout)

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
        if group.get("differentiable"):
            raise ValueError("differentiable=True is not supported by minioptim; leave it False")
        if group.get("capturable", self.capturable) != self.capturable:
            raise ValueError(
                f"a param group sets capturable={group['capturable']}, but the optimizer was "
                f"created with capturable={self.capturable}: minioptim keeps the step counts of "
                "all groups in one place; pass capturable= to the optimizer, not to a group"
            )
        max_norm = group.get("max_grad_norm")
        valid = isinstance(max_norm, Real) and not isinstance(max_norm, bool) and max_norm > 0
        if max_norm is not None and not valid:
            raise ValueError(f"max_grad_norm must be a number > 0 or None, got {max_norm!r}")
        self.check_group(group)
        super().add_param_group(group)
        # One bucket per (device, dtype), and FSDP2's sharded parameters in buckets of their own.
        by_kind: dict[tuple[torch.device, torch.dtype, type], list[torch.Tensor]] = {}
        for p in self.param_groups[-1]["params"]:
            kind = ShardedBuffer if isinstance(p, DTensor) else FlatBuffer
            by_kind.setdefault((p.device, p.dtype, kind), []).append(p)
        with torch.no_grad():
            self._buckets.append([kind(ps) for (_, _, kind), ps in by_kind.items()])
        for b, bucket in enumerate(self._buckets[-1]):
            self.precision.attach(bucket, salt(len(self._buckets) - 1, b))
            if self.capturable:
                bucket.keep_steps_on_device()
        self._on_cuda = any(bucket.device.type == "cuda" for bucket in self._all_buckets())

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
            problem = None if isinstance(p, DTensor) else unmovable(p)
            if problem:
                raise ValueError(f"{name}: params[{i}] {problem}")
        self._check_no_shared_memory(params)

    def _check_no_shared_memory(self, new: list[torch.Tensor]) -> None:
        """Raise if two parameters share memory (tied through ``.data``, not by object).

        torch.optim would update the shared memory once per parameter; packing them into
        separate slots would untie them silently.
        """
        # one parameter in two groups is not tied memory: torch.optim's check reports it
        unique = {id(p): p for p in (*self._params(), *new)}.values()
        params = [p for p in unique if not isinstance(p, DTensor)]
        spans = sorted(
            (str(p.device), p.data_ptr(), p.data_ptr() + p.nbytes, i)
            for i, p in enumerate(params)
            if p.numel()
        )
        for (device, _, end, i), (other, start, _, j) in itertools.pairwise(spans):
            if device == other and start < end:
                raise ValueError(
                    f"{type(self).__name__}: parameters {min(i, j)} and {max(i, j)} (counting "
                    "every group) share memory, tied through .data. Tie modules by sharing one "
                    "Parameter (b.weight = a.weight): optimizers then see it once"
                )

    # -- stepping ---------------------------------------------------------------------------

    def _patch_step_function(self) -> None:
        """As torch.optim's (which ``__init__`` calls), with :func:`observed_only_when_watched`."""
        self._zero_grad_profile_name = f"Optimizer.zero_grad#{type(self).__name__}.zero_grad"
        if not getattr(type(self).step, "hooked", False):
            type(self).step = observed_only_when_watched(type(self).step)
            type(self).step.hooked = True

    # Dynamo does not trace into step(): it is a handful of fused kernels over flat buffers
    # already, and its binding check inspects Python objects (p.data, p.grad) that a graph
    # cannot capture. So torch.compile(optimizer.step) runs this eagerly, same numbers.
    @torch.compiler.disable
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
        owner = type(self).__name__
        capturing = self._capturing()
        if capturing and not self.capturable:
            raise RuntimeError(CAPTURE_ERROR.format(owner=owner))
        self._check_groups()
        self._sync_state_edits()
        for group, buckets in zip(self.param_groups, self._buckets, strict=True):
            specs = self._declare(group, owner)
            runs = [(bucket, run) for bucket in buckets
                    for run in bucket.runs(bucket.check_bindings(owner))]  # fmt: skip
            extra = None
            if group.get("max_grad_norm") is not None and any(b.sharded for b in buckets):
                raise RuntimeError(SHARDED_CLIPPING.format(owner=owner))
            if group.get("max_grad_norm") is not None or self._overrides("prepare"):
                extra = self.prepare(group, [bucket.grad[r.start : r.stop] for bucket, r in runs])
            if capturing:
                self._check_capture(runs, extra, owner)
            for bucket in buckets:
                self.precision.sync(bucket)
            for bucket, run in runs:
                bucket_specs = specs + self.precision.specs(bucket.dtype)
                state, new = bucket.run_state(bucket_specs, run)
                self._update_run(group, extra, bucket, run, state)
                bucket.finish(run)
                if new and (bucket_specs or self.keeps_step(group)):
                    bucket.publish(self.state, bucket_specs, run, self.keeps_step(group))
            for bucket in buckets:
                self.precision.record(bucket)
        self.state.edited = False  # publish wrote the entries, not the user
        return loss

    def _capturing(self) -> bool:
        """Whether this step is being captured in a CUDA graph."""
        return self._on_cuda and torch.cuda.is_current_stream_capturing()

    @staticmethod
    def _check_capture(runs: list, prepared: dict[str, Any] | None, owner: str) -> None:
        """Raise where a captured step would replay wrongly: a first update (it fills the
        state), or per-step values computed on the host by :meth:`prepare`."""
        if not all(bucket.started_all(run) for bucket, run in runs):
            raise RuntimeError(CAPTURE_FIRST_STEP.format(owner=owner))
        numbers = [k for k, v in (prepared or {}).items() if not isinstance(v, torch.Tensor)]
        if numbers:
            raise RuntimeError(CAPTURE_HOST_VALUES.format(owner=owner, names=", ".join(numbers)))

    def prepare(self, group: dict[str, Any], grads: list[torch.Tensor]) -> dict[str, Any] | None:
        """Look at a whole group once per step, before its updates (override to extend).

        ``grads`` are the flat gradient slices that this step's updates of the group will
        receive (parameters without a gradient are left out): one per run of each bucket.
        A returned dict holds values for this step only, which :meth:`update` reads from
        its ``group`` argument (``param_groups`` itself is not changed). A group-wide
        statistic (a global gradient norm, a trust ratio) is thus a few lines.

        The default clips the gradients when the group sets ``max_grad_norm``, exactly as
        ``torch.nn.utils.clip_grad_norm_(group["params"], max_grad_norm)`` before the step
        (to float rounding; ``p.grad`` holds the clipped values afterwards, as there). An
        override that keeps this calls ``super().prepare(group, grads)``.
        """
        if group.get("max_grad_norm") is not None and grads:
            clip_grad_norm_(grads, group["max_grad_norm"])
        return None

    def _declare(self, group: dict[str, Any], owner: str) -> tuple[State, ...]:
        """The rule's state specs for ``group`` (a precision mode adds its own per bucket)."""
        specs = declare(self.state_names(group), owner)
        self.precision.check_names(specs, owner)
        return specs

    @property
    def impl(self) -> str:
        """The path this optimizer runs: ``"reference"``, ``"fast"`` or ``"compiled"`` (what
        ``impl="auto"`` chose on a CPU). Setting it chooses that path on every device."""
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        self._impl = value
        self.auto = False

    @classmethod
    def _overrides(cls, name: str) -> bool:
        """Whether this class has its own ``name`` method, not the base class's."""
        return getattr(cls, name) is not getattr(FusedOptimizer, name)

    def _check_groups(self) -> None:
        """Raise if ``param_groups`` no longer lists the parameters the buffers hold.

        torch.optim reads ``group["params"]`` at every step, so a parameter appended to
        it is trained; minioptim packs a group's parameters once, in ``add_param_group``.
        """
        if len(self.param_groups) != len(self._buckets):
            raise RuntimeError(
                f"{type(self).__name__}: param_groups has {len(self.param_groups)} groups, but "
                f"the optimizer was built with {len(self._buckets)}. Add groups with "
                "optimizer.add_param_group(...); to drop one, create a new optimizer"
            )
        for g, (group, buckets) in enumerate(zip(self.param_groups, self._buckets, strict=True)):
            if len(group["params"]) != sum(map(len, buckets)):
                raise RuntimeError(
                    f"{type(self).__name__}: param_groups[{g}]['params'] has "
                    f"{len(group['params'])} parameters, but the optimizer packed "
                    f"{sum(map(len, buckets))} into its buffers when the group was added. "
                    "Add parameters with optimizer.add_param_group({'params': [...]}) "
                    "instead of changing a group's list; to remove some, create a new optimizer"
                )

    def _sync_state_edits(self) -> None:
        """Take in edits of ``optimizer.state`` (see :mod:`minioptim.watched`).

        After ``state.clear()``, ``del state[p]`` or a replaced entry, the flat state holds
        what the entries now say, and parameters without an entry start afresh at their
        next update, exactly as torch.optim's step would read them.
        """
        if isinstance(self.state, WatchedState) and not self.state.edited:
            return
        self._adopt_entries(lambda p, step: step if self.state.get(p) else None, edited=True)

    def _update_run(
        self,
        group: dict[str, Any],
        prepared: dict[str, Any] | None,
        bucket: FlatBuffer,
        run: Run,
        state: dict[str, Any],
    ) -> None:
        """Call the rule on one run, and check that it worked in place.

        ``prepared`` is what :meth:`prepare` returned for this step; the rule reads it from
        its ``group`` argument (compiled, as 0-d tensors: graph inputs, not constants).

        Under a precision mode (half-precision buckets only) the rule runs on float32
        working tensors, in pieces for an elementwise built-in rule, and each piece's
        result is rounded back (:meth:`minioptim.precision.Precision.pieces`).
        """
        precise = self.precision.applies(bucket.dtype)
        dtype = torch.float32 if precise else bucket.dtype
        fast = self.impl == "fast" and dtype in self._fast_dtypes_on(bucket.device)
        compiled = self.impl == "compiled" or self._auto_compiles(bucket.device)
        method = "fast_update" if fast and not compiled else "update"
        wrap = None
        if precise and compiled:  # casts, rule and rounding: one generated kernel
            names = tuple(k for k in state if k not in PRECISION_NAMES)
            wrap = functools.partial(compiled_fused, mode=self.precision.mode, names=names)
        update = self._compiled_update(wrap) if compiled else getattr(self, method)
        if prepared:
            if compiled:
                prepared = {key: as_tensor(value, bucket.device) for key, value in prepared.items()}
            group = {**group, **prepared}
        extra = {}
        if self._needs_layout(method):
            if bucket.sharded and not self.handles_shards:
                raise RuntimeError(
                    f"{type(self).__name__}'s update needs whole tensors (it takes a layout), "
                    "but under FSDP2 this process holds only shards of them. Optimize these "
                    "parameters without fully_shard, or with an optimizer that works "
                    "element-wise (SGD, Adam, AdamW, SignSGD, Lion) or handles shards (Muon)."
                )
            extra["layout"] = bucket.layout(run.first, run.end)
        if not precise or compiled:
            param = bucket.param[run.start : run.stop]
            grad = bucket.grad[run.start : run.stop]
            if precise:
                state = self.precision.fused_state(bucket, run, state)
            self._call_rule(update, method, group, param, grad, state, run.step, extra)
            return
        elementwise = not extra and self.rule is not None and not (
            self._overrides("update") or self._overrides("fast_update"))  # fmt: skip
        for work in self.precision.pieces(bucket, run, state, chunked=elementwise):
            self._call_rule(update, method, group, work.param, work.grad, work.state,
                            run.step, extra)  # fmt: skip
            work.finish()

    def _call_rule(self, update, method, group, param, grad, state, step, extra) -> None:
        slices = StateSlices(state, type(self).__name__)
        version, grad_version = param._version, grad._version
        pointers = {key: tensor.data_ptr() for key, tensor in state.items()}
        try:
            result = update(group, param, grad, slices, step, **extra)
        except RuntimeError as error:  # CUDA: "... not permitted when stream is capturing"
            if "captur" in str(error) and self._capturing():
                raise RuntimeError(CAPTURE_HOST_READ.format(
                    owner=type(self).__name__, method=method, error=error)) from error  # fmt: skip
            raise
        self._check_in_place(f"{type(self).__name__}.{method}()", result, param, version,
                             grad, grad_version, state, slices, pointers)  # fmt: skip

    def _check_in_place(
        self, name, result, param, version, grad, grad_version, state, slices, pointers
    ) -> None:
        """Raise if an update returned a value, replaced or rebound its state, wrote the
        gradients, or left the parameters unchanged: the mistakes that train silently wrong."""
        if result is not None:
            raise TypeError(
                f"{name} returned a {type(result).__name__}; updates are in place and return "
                "nothing: write param.add_(...) / param.copy_(...) instead of returning a value"
            )
        for key, tensor in state.items():
            how = "replaced" if slices.get(key) is not tensor else "rebound .data of"
            if how == "replaced" or tensor.data_ptr() != pointers[key]:
                raise RuntimeError(
                    f"{name} {how} state[{key!r}] instead of updating it in place; the "
                    f"optimizer keeps the original. Write state[{key!r}].mul_(...).add_(...) "
                    f"or state[{key!r}].copy_(new_value)"
                )
        if grad._version != grad_version:
            raise RuntimeError(
                f"{name} changed grad in place, which is p.grad: code after step() (logging, "
                "clipping, accumulation) would read the changed gradients. Compute into a new "
                "tensor: g = grad.add(...) / grad.mul(...) instead of grad.add_(...)"
            )
        # (an empty slice cannot change: the run holds only zero-element parameters)
        if param._version == version and param.numel() and not self.allow_unchanged_params:
            raise RuntimeError(
                f"{name} did not change param in place, so the parameters did not move. "
                "Write param.add_(update, alpha=-lr), not param = param - lr * update or "
                "param.data = ... (A rule that leaves the parameters unchanged on purpose "
                "sets allow_unchanged_params = True.)"
            )

    def _compiled_update(self, wrap: Callable | None = None) -> Callable[..., None]:
        """``update`` with its rule compiled (see :mod:`minioptim.compiled`); ``wrap(function,
        method=...)``, if given, compiles it with a precision mode's casts and rounding
        around it instead (:func:`minioptim.precision.compiled_fused`)."""
        rule = self._compiled_rule()
        if wrap is not None:
            rule = wrap(rule.function, method=rule.method)
        return functools.partial(rule, self) if rule.method else functools.partial(self.rule, rule)

    def _compiled_rule(self) -> CompiledRule:
        """The compiled rule: a built-in's reference function, or the class's own
        ``update`` function."""
        if not self._overrides("update") and self.rule is not None:
            return compiled(self.rule.reference)
        return compiled(type(self).update, method=True)

    def _auto_compiles(self, device: torch.device) -> bool:
        """Whether ``impl="auto"`` runs the compiled rule on ``device`` (see
        ``AUTO_COMPILED``): not for a rule that takes a layout (Muon's matrix products are
        not a memory-bound loop), nor where the compiler's package is missing, nor once
        compiling the rule failed (it warned; the path taken on a CPU takes over)."""
        package = AUTO_COMPILED.get(device.type)
        return (
            self.auto
            and package is not None
            and not self._needs_layout("update")
            and installed(package)
            and not self._compiled_rule().failed
        )

    def _fast_dtypes_on(self, device: torch.device) -> tuple[torch.dtype, ...]:
        if device.type == "cuda" and self.cuda_fast_dtypes is not None:
            return self.cuda_fast_dtypes
        return self.fast_dtypes

    def _needs_layout(self, name: str) -> bool:
        """Whether ``update`` / ``fast_update`` takes a layout: its own signature says so,
        or, for a built-in rule (the base class's methods), the rule's function does."""
        if not self._overrides(name):
            return self.rule is not None and "layout" in self.rule.context
        return takes_layout(getattr(type(self), name))

    @classmethod
    def _check_update_signatures(cls) -> None:
        """Raise if a subclass's update takes a sixth argument that is not ``layout``."""
        for name in ("update", "fast_update"):
            method = getattr(cls, name)
            if not cls._overrides(name) or not inspect.isfunction(method):
                continue
            positional = [
                p.name
                for p in inspect.signature(method).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(positional) == 7 and positional[6] != "layout":
                raise TypeError(
                    f"{cls.__name__}.{name}() takes a sixth argument {positional[6]!r}; the "
                    "optimizer passes the slice's shapes as layout=..., so name it layout: "
                    "def update(self, group, param, grad, state, step, layout)"
                )

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero every gradient: one fill per bucket.

        Unlike ``torch.optim`` (whose default is ``set_to_none=True``), gradients stay
        allocated, as aliases of the buffer, with value zero. A parameter that then
        receives no gradient still gets weight decay and momentum, exactly as in
        torch.optim with ``zero_grad(set_to_none=False)``. Frozen parameters
        (``requires_grad=False``, also when frozen mid-training) get ``p.grad = None``
        and are skipped, as with torch.optim's default; unfreezing brings them back.
        Pass ``set_to_none=True`` for torch's behaviour for every parameter: ``p.grad``
        becomes ``None`` and the parameter is skipped until it gets a gradient.
        """
        for bucket in self._all_buckets():
            bucket.zero_grad(set_to_none)

    @property
    def buckets(self) -> tuple[tuple[FlatBuffer, ...], ...]:
        """The flat buffers, read-only: ``buckets[g]`` holds group ``g``'s, one per (device, dtype).

        Each :class:`~minioptim.flat.FlatBuffer` shows ``param`` and ``grad`` (the flat
        tensors), ``params`` (the parameters in buffer order), ``offsets``, ``state``,
        ``steps`` and ``layout()``.
        """
        return tuple(tuple(buckets) for buckets in self._buckets)

    def _all_buckets(self) -> Iterable[FlatBuffer]:
        return (bucket for buckets in self._buckets for bucket in buckets)

    # -- checkpoints ------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim pickles defaults, state and param_groups; the buckets come along so
        # that copy.deepcopy(optimizer) gives a working optimizer over copied parameters.
        # Copied state tensors stay views of the copied flat state; each copied bucket makes
        # new aliases of its buffers, and its binding check re-adopts the copied parameters
        # (which have storage of their own) at the first step.
        return {
            **super().__getstate__(),
            "_impl": self._impl,
            "auto": self.auto,
            "capturable": self.capturable,
            "precision": self.precision,
            "_buckets": self._buckets,
            "_on_cuda": self._on_cuda,
        }

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's format; tensors are copies, not views of the live buffers.

        Parameters without a ``"step"`` entry (:meth:`keeps_step` false for their group)
        have their step counts saved beside ``"state"`` and ``"param_groups"``, under
        ``"minioptim_steps"`` (parameter index -> count); torch.optim ignores the key.
        """
        self._sync_state_edits()
        state_dict = super().state_dict()
        state_dict["state"] = {
            index: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in entry.items()}
            for index, entry in state_dict["state"].items()
        }
        numbered = enumerate((g, p) for g in self.param_groups for p in g["params"])
        without_step = [(i, p) for i, (group, p) in numbered if not self.keeps_step(group)]
        if without_step:
            steps = self._steps_by_param()
            state_dict[SAVED_STEPS] = {i: steps[id(p)] for i, p in without_step}
        if self.precision.mode != "plain":
            state_dict[SAVED_PRECISION] = self.precision.saved()
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict of this class or of the matching torch.optim optimizer.

        torch.optim's loader matches parameters by position and casts state to each
        parameter's device and dtype; the values are then copied into the flat state
        (where a precision mode keeps state in float32, from the uncast values). A
        checkpoint saved with stochastic rounding gives its seed to this optimizer.
        """
        super().load_state_dict(state_dict)
        self.precision = self.precision.loaded(state_dict.get(SAVED_PRECISION))
        restore_uncast(self, state_dict)
        drop_unused(self, state_dict)
        params = self._params()
        saved = {id(params[int(i)]): s for i, s in state_dict.get(SAVED_STEPS, {}).items()}
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        self._adopt_entries(lambda p, step: saved.get(id(p)), edited=False)

    def _adopt_entries(self, saved_step: Callable[[Any, float], Any], edited: bool) -> None:
        """Copy the entries of ``self.state`` into the buckets' flat state.

        ``saved_step(p, current_count)`` is the step count to use for ``p`` where its entry
        has no ``"step"`` (see :meth:`FlatBuffer.adopt`).
        """
        self.state = WatchedState(self.state)
        owner = type(self).__name__
        with torch.no_grad():
            for group, buckets in zip(self.param_groups, self._buckets, strict=True):
                specs = self._declare(group, owner)
                for bucket in buckets:
                    bucket_specs = specs + self.precision.specs(bucket.dtype)
                    if edited and not bucket_specs and not self.keeps_step(group):
                        continue  # a stateless rule keeps no entries to edit, as in torch.optim
                    if edited:
                        self.precision.complete(self.state, bucket)
                    counts = zip(bucket.params, bucket.steps.tolist(), strict=True)
                    steps = [saved_step(p, n) for p, n in counts]
                    bucket.adopt(self.state, bucket_specs, self.keeps_step(group), steps,
                                 edited=edited)  # fmt: skip
                    self.precision.record(bucket, loaded=not edited)
        self.state.edited = False

    def _params(self) -> list[torch.Tensor]:
        """Every parameter, in the order state_dict() numbers them."""
        return [p for group in self.param_groups for p in group["params"]]

    def _steps_by_param(self) -> dict[int, float]:
        return {
            id(p): float(step)
            for bucket in self._all_buckets()
            for p, step in zip(bucket.params, bucket.steps, strict=True)
        }
