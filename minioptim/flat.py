"""FlatBuffer: the parameters of one bucket packed into one contiguous tensor.

A bucket is the set of parameters of one param group that share a device and a dtype.
Its values live in one 1-d tensor ``param`` and its gradients in one 1-d tensor ``grad``;
every parameter's ``p.data`` and ``p.grad`` is an alias of a slice of them::

    param:  [ p0 p0 p0 p0 | p1 p1 | p2 p2 p2 ... ]
    grad:   [ g0 g0 g0 g0 | g1 g1 | g2 g2 g2 ... ]
              offsets[0]    offsets[1]  ...

So an update written on ``param`` and ``grad`` updates every parameter at once, and
``grad.zero_()`` zeroes every gradient with one fill. Same-shaped parameters sit next to
each other (the buffer is ordered by shape, in order of first appearance), so a rule can
see them as one batched tensor without a copy (:meth:`minioptim.Layout.by_shape`).

Each alias has a storage object of its own that points into the buffer's memory
(:func:`alias`). To serializers (safetensors, ``torch.save``, accelerate) the parameters
therefore look like the independent tensors they are in a model without minioptim.

The aliases are only as good as the code around them: ``model.zero_grad()`` sets gradients
to ``None``, DDP and user code assign ``p.grad``, ``model.double()`` replaces ``p.data``.
:meth:`FlatBuffer.check_bindings` runs before every update, finds such changes with pointer
comparisons, and repairs them, or raises when a parameter can no longer live in the buffer.

The bucket also owns its optimizer state: flat tensors declared by the rule
(:class:`~minioptim.State`), filled with their initial value before a parameter's first
update, one step counter per parameter, and the adoption of a loaded ``state_dict``.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .layout import Layout, consecutive
from .state import State

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a build of torch without torch.distributed
    DTensor = ()  # isinstance(x, ()) is always False

GRAD = operator.attrgetter("grad")  # p.grad for each p in map(GRAD, params), at C speed
REQUIRES_GRAD = operator.attrgetter("requires_grad")
VERSION = operator.attrgetter("_version")
# The memory formats that torch keeps for gradients and optimizer state, by dimension.
CHANNELS_LAST = {4: (torch.channels_last,), 5: (torch.channels_last_3d,)}


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's shard of a DTensor (FSDP2's parameters); any other tensor as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def scalar_dtype() -> torch.dtype:
    """The dtype torch.optim uses for its ``step`` counters."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def alias(view: torch.Tensor) -> torch.Tensor:
    """A tensor with a storage object of its own over the memory of ``view``.

    A plain view shares its base's storage, so every parameter of a bucket would share
    one storage, and serializers that look at storages (safetensors, accelerate) would
    take them for tied weights and keep one. ``torch.from_dlpack`` wraps the same memory
    in a new storage that starts at the view's first element and is exactly as large;
    it holds a reference to the view, so the buffer lives as long as the alias. Where a
    backend has no DLPack support the plain view is kept.
    """
    try:
        return torch.from_dlpack(view)
    except (RuntimeError, BufferError, TypeError):
        return view


def unmovable(data: torch.Tensor) -> str | None:
    """Why the memory of ``data`` cannot move into a buffer unnoticed, or ``None``.

    Packing copies a parameter into the buffer and makes ``p.data`` an alias of its slot.
    That changes nothing a program can see, unless the old memory had a layout of its own
    or someone else still reads it.
    """
    formats = CHANNELS_LAST.get(data.dim(), ())
    if not data.is_contiguous() and any(data.is_contiguous(memory_format=f) for f in formats):
        return (
            "is channels_last, and the buffer keeps parameters contiguous, so its memory "
            "format would change silently. minioptim does not support channels_last "
            "parameters yet: leave the model in the default memory format, or use torch.optim"
        )
    if data.device.type == "cpu" and data.is_shared():
        return (
            "lives in shared memory (model.share_memory(), as for Hogwild training), and "
            "the optimizer keeps parameters in a buffer of its own, which the other "
            "processes would not see. Use torch.optim for Hogwild training"
        )
    return None


def held_elsewhere(param: torch.Tensor) -> bool:
    """Whether another tensor than ``param`` holds its memory (a bucket, a caller's ``t``).

    Counts the references to the storage: ``param`` itself and the storage object made
    to ask make two. (torch.distributed's ZeroRedundancyOptimizer points ``p.data`` into
    its own buckets, which it broadcasts after each step.)
    """
    storage = param.untyped_storage()
    return torch._C._storage_Use_Count(storage._cdata) > 2


@dataclass(frozen=True)
class Run:
    """Consecutive parameters ``first .. end - 1`` of a bucket, updated with one call.

    ``start:stop`` is their slice of the flat buffers and ``step`` the number of this
    update for each of them (1 on the first): an ``int``, or with ``capturable=True`` a
    0-d tensor on the parameters' device (:meth:`FlatBuffer.keep_steps_on_device`).
    """

    first: int
    end: int
    start: int
    stop: int
    step: int | torch.Tensor


class FlatBuffer:
    """One contiguous buffer for the values, gradients and state of a list of parameters.

    (:class:`~minioptim.sharded.ShardedBuffer` is the variant for FSDP2's parameters.)

    Parameters
    ----------
    params:
        Parameters of one device and one dtype. Their current values (and gradients, if
        any) are copied into the buffer; from then on ``p.data`` and ``p.grad`` alias it.
        The buffer orders them by shape; :attr:`params` lists them in buffer order.
    """

    #: Whether the buffer holds copies of FSDP2 shards rather than the parameters themselves.
    sharded = False

    def __init__(self, params: list[torch.Tensor]) -> None:
        # Ordered by the parameters' (global) shapes, never by their FSDP2 shards' shapes:
        # shards of uneven size differ between processes, and the order of the buffer is
        # the order of optimizer.state, which distributed checkpoints gather rank by rank.
        first_seen: dict[torch.Size, int] = {}
        for i, p in enumerate(params):
            first_seen.setdefault(p.shape, i)
        self.params = sorted(params, key=lambda p: first_seen[p.shape])
        self.shapes = [local(p).shape for p in self.params]
        self.device = params[0].device
        self.dtype = params[0].dtype
        self.offsets = [0, *itertools.accumulate(shape.numel() for shape in self.shapes)]
        size = self.offsets[-1]
        self.param = torch.empty(size, dtype=self.dtype, device=self.device)
        self.grad = torch.zeros(size, dtype=self.dtype, device=self.device)
        for i, p in enumerate(self.params):
            self.slot(self.param, i).copy_(local(p).detach())
            if p.grad is not None:
                self.slot(self.grad, i).copy_(local(p.grad))
        # Optimizer state: flat tensors, created on first use, and how many updates each
        # parameter has seen. Like torch.optim, the counters are float tensors on the CPU;
        # state['step'] entries are views of them.
        self.state: dict[str, torch.Tensor] = {}
        self.state_offsets: dict[str, list[int]] = {}
        self.state_shapes: dict[str, list[torch.Size | None]] = {}  # None: not kept
        self.steps = torch.zeros(len(self.params), dtype=scalar_dtype())
        # Whether each parameter has state (torch.optim: a non-empty state[p]). Its state
        # is set to each spec's init before its first update, and again after its entry
        # was deleted; zeroing state[p]["step"] restarts the count but keeps the state.
        self.started = [False] * len(self.params)
        # What the host knows of the counts without reading them (relabel): the counts
        # themselves while they are on the CPU, labels while they are on the device.
        self.on_device = False
        self.relabel()
        # A precision mode (minioptim.precision) may keep state in another dtype than the
        # parameters' (float32 master weights and moments): state_dtypes[name], else
        # state_dtype; and its per-bucket data in `precision`.
        self.state_dtype = self.dtype
        self.state_dtypes: dict[str, torch.dtype] = {}
        self.precision: Any = None
        self._layouts: dict[tuple[int, int], Layout] = {}
        self._attach()

    def _attach(self) -> None:
        """Make every ``p.data`` and ``p.grad`` an alias of its slot."""
        self._bind()
        for p, value, grad in zip(self.params, self.param_views, self.grad_views, strict=True):
            p.data = value
            if p.grad is not None:
                p.grad = grad
        self._remember_bindings()

    def _remember_bindings(self) -> None:
        """What the binding check compares with: the aliases' pointers and versions."""
        self.data_ptrs = [view.data_ptr() for view in self.param_views]
        self._note_grad_versions()

    def _note_grad_versions(self) -> None:
        """Remember the gradient aliases' version counters: backward, adding into a
        gradient in place, bumps them; zero_grad's fill of the flat buffer does not."""
        self.grad_versions = list(map(VERSION, self.grad_views))

    def _bind(self) -> None:
        """Make the aliases that ``p.data`` and ``p.grad`` will be."""
        n = len(self.params)
        self.param_views = [alias(self.slot(self.param, i)) for i in range(n)]
        self.grad_views = [alias(self.slot(self.grad, i)) for i in range(n)]

    def __getstate__(self) -> dict[str, Any]:
        # copy.deepcopy / pickle: the aliases are made anew over the copied buffers, and
        # the copied parameters (fresh storage) are re-adopted by the next binding check.
        state = self.__dict__.copy()
        for name in ("param_views", "grad_views"):
            state.pop(name, None)
        state["_layouts"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind()
        self._remember_bindings()

    def __len__(self) -> int:
        return len(self.params)

    def slot(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        """The slice of a flat tensor that belongs to parameter ``i``, shaped like it."""
        return flat[self.offsets[i] : self.offsets[i + 1]].view(self.shapes[i])

    def layout(self, first: int = 0, end: int | None = None) -> Layout:
        """The :class:`~minioptim.Layout` of parameters ``first .. end - 1`` (cached)."""
        end = len(self) if end is None else end
        key = (first, end)
        if key not in self._layouts:
            start = self.offsets[first]
            offsets = [offset - start for offset in self.offsets[first : end + 1]]
            params, shapes = self.params[first:end], self.shapes[first:end]
            self._layouts[key] = Layout(
                params, offsets, self.device, shapes, states=self._state_layout(first, end)
            )
        return self._layouts[key]

    def _state_layout(self, first: int, end: int):
        """For ``Layout.of(name)``: state ``name``'s shapes for parameters ``first .. end - 1``."""

        def shapes_of(name: str) -> list[torch.Size | None]:
            if name not in self.state_shapes:
                kept = ", ".join(repr(k) for k in self.state_shapes) or "none"
                raise KeyError(f"layout.of({name!r}): no such state; this bucket keeps {kept}")
            return self.state_shapes[name][first:end]

        return shapes_of

    # -- the binding check --------------------------------------------------------------

    def check_bindings(self, owner: str) -> list[bool]:
        """Make every ``p.data`` and ``p.grad`` an alias of the buffer again.

        Returns, for each parameter, whether it has a gradient this step.

        - ``p.data`` replaced (``p.data = ...``, ``model.to()``/``.double()``, which replace
          ``p.data`` or swap the tensor): the new values are copied in and ``p.data``
          re-bound, if device, dtype and shape still fit; otherwise a ``RuntimeError``
          (never train an orphaned buffer).
        - ``p.grad`` is a tensor but not our alias (``model.zero_grad()`` then ``backward``,
          DDP, ``p.grad = ...``): its values are copied into the slot and ``p.grad`` re-bound.
        - ``p.grad is None``: the parameter is skipped this step, as in torch.optim.
        - frozen since the last ``zero_grad`` (``requires_grad=False``, ``p.grad`` still
          our alias, and nothing but zeros written to it since): ``p.grad`` becomes
          ``None`` and the parameter is skipped, as it would be in torch.optim, whose
          ``zero_grad`` sets gradients to ``None``. Frozen after its backward (a gradient
          was written), it is updated, as in torch.optim.

        When nothing changed this costs two pointer comparisons per parameter.
        """
        params = self.params
        if list(map(torch.Tensor.data_ptr, params)) != self.data_ptrs:
            for i, p in enumerate(params):
                if p.data_ptr() != self.data_ptrs[i]:
                    self._readopt_data(i, owner)
        grads = list(map(GRAD, params))
        if all(map(operator.is_, grads, self.grad_views)) and all(map(REQUIRES_GRAD, params)):
            return [True] * len(params)
        stale, fresh, has_grad = [], [], []
        written = map(operator.ne, map(VERSION, self.grad_views), self.grad_versions)
        for p, grad, view, changed in zip(params, grads, self.grad_views, written, strict=True):
            if grad is view and not p.requires_grad and not (changed and view.any()):
                p.grad = grad = None
            elif grad is not None and grad is not view:
                if grad.is_sparse:
                    raise RuntimeError(f"{owner} does not support sparse gradients")
                stale.append(view)
                fresh.append(grad)
                p.grad = view
            has_grad.append(grad is not None)
        if fresh:
            torch._foreach_copy_(stale, fresh)  # one call for every foreign gradient
        return has_grad

    def zero_grad(self, set_to_none: bool) -> None:
        """Set every gradient to ``None``, or zero them all with one fill (see bind_grads)."""
        if set_to_none:
            for p in self.params:
                p.grad = None
        else:
            self.grad.zero_()
            self.bind_grads()

    def bind_grads(self) -> None:
        """After the slots were zeroed: ``p.grad`` is the alias, or ``None`` if ``p`` is frozen.

        A frozen parameter (``requires_grad=False``) gets ``p.grad = None``, so the
        optimizer skips it, as torch.optim does, instead of applying weight decay or
        momentum to it; unfrozen, it gets its alias back and rejoins the fused update.
        """
        for p, view in zip(self.params, self.grad_views, strict=True):
            wanted = view if p.requires_grad else None
            if p.grad is not wanted:
                p.grad = wanted
        self._note_grad_versions()

    def _readopt_data(self, i: int, owner: str) -> None:
        p, view = self.params[i], self.param_views[i]
        shared = held_elsewhere(p)
        data = p.data
        buffer_start = self.param.data_ptr()
        problem = unmovable(data)
        if problem is None and buffer_start <= data.data_ptr() < buffer_start + self.param.nbytes:
            problem = (
                "now points at the memory of another parameter of this optimizer (tied "
                "through .data). Tie modules by sharing one Parameter (b.weight = a.weight)"
            )
        elif problem is None and shared:
            problem = (
                "now lives in memory that another tensor holds too "
                "(ZeroRedundancyOptimizer's parameters_as_bucket_view=True, "
                "vector_to_parameters, p.data = t with t still in use), which would not see "
                "the updates: the optimizer keeps parameters in a buffer of its own. Write "
                "new values in place (with torch.no_grad(): p.copy_(t)), or pass "
                "parameters_as_bucket_view=False"
            )
        if problem:
            raise RuntimeError(f"{owner}: a parameter of shape {tuple(p.shape)} {problem}")
        if (data.device, data.dtype, data.shape) != (self.device, self.dtype, view.shape):
            raise RuntimeError(
                f"{owner}: a parameter of a group is now a {data.dtype} tensor of shape "
                f"{tuple(data.shape)} on {data.device}, but the optimizer holds it as "
                f"{self.dtype} of shape {tuple(view.shape)} on {self.device}. The model was "
                "moved, cast or resized after the optimizer was created. Create the optimizer "
                "after model.to(...) / .double() / .half(), or load its state_dict into a new "
                "optimizer."
            )
        view.copy_(data)
        p.data = view
        self.data_ptrs[i] = p.data_ptr()
        # its values changed in place, as far as the optimizer sees: count it, as an
        # in-place write would (precision="master" re-reads such parameters)
        torch.autograd.graph.increment_version(p)

    def keep_steps_on_device(self) -> None:
        """Keep the step counters on the parameters' device, for ``capturable=True``.

        A CUDA graph replays the kernels it captured and none of the Python around them, so
        a replayed step must find everything that changes from step to step on the device:
        the counters are advanced there, and a rule receives its run's ``step`` as a 0-d
        tensor. The host no longer reads the counts (that would wait for the device, which
        a capture forbids); it keeps a *label* per parameter instead, equal for parameters
        updated together ever since, hence with equal counts, whatever the replays added.
        A count written from outside (``optimizer.state[p]["step"].zero_()``) bumps the
        counters' version, and the next step reads the counts again.
        """
        self.steps = self.steps.to(self.device)
        self.on_device = True
        self.relabel()

    def relabel(self) -> None:
        """Read the counts into the host's ``labels``: at the start, after a checkpoint,
        and after a count was written from outside (the counters' version changed).

        Between reads the host keeps them itself (:meth:`count`), so a step reads no
        tensor to split the bucket into runs: with the counters on the CPU the labels are
        the counts; on the device, labels equal for parameters with equal counts.
        """
        self.labels = [int(count) for count in self.steps.tolist()]
        self._fresh_label = itertools.count(max(self.labels, default=0) + 1)
        self._labelled_version = self.steps._version

    # -- which slices to update -----------------------------------------------------------

    def runs(self, has_grad: list[bool]) -> list[Run]:
        """Split the bucket into runs to update with one call each.

        A run is a maximal range of consecutive parameters that have a gradient and have
        seen the same number of updates. Normally that is the whole bucket: one run.
        Parameters without a gradient are left out (torch.optim skips them), and
        parameters that skipped steps keep their own step count, so Adam's bias
        correction stays exact per parameter.
        """
        if self.steps._version != self._labelled_version:  # a count was written
            self.relabel()
        labels = self.labels
        if labels.count(labels[0]) == len(labels) and all(has_grad):
            return [self._run(0, len(self), labels[0] + 1)]
        return [
            self._run(first, end, label + 1)
            for (grad, label), first, end in consecutive(list(zip(has_grad, labels, strict=True)))
            if grad
        ]

    def _run(self, first: int, end: int, step: int) -> Run:
        if self.on_device:  # the count is on the device: step is computed there
            step = self.steps[first] + 1
        return Run(first, end, self.offsets[first], self.offsets[end], step)

    # -- state ------------------------------------------------------------------------------

    def state_buffer(self, spec: State) -> torch.Tensor:
        """The flat state tensor of ``spec``, created (filled with its init) on first use."""
        if spec.name not in self.state:
            shapes = [spec.shape_for(shape) for shape in self.shapes]
            sizes = (0 if shape is None else shape.numel() for shape in shapes)
            offsets = [0, *itertools.accumulate(sizes)]
            self.state_shapes[spec.name] = shapes
            self.state_offsets[spec.name] = offsets
            self.state[spec.name] = torch.full(
                (offsets[-1],),
                0.0 if callable(spec.init) else spec.init,
                dtype=self.state_dtypes.get(spec.name, self.state_dtype),
                device=self.device,
            )
        return self.state[spec.name]

    def state_slot(self, name: str, i: int) -> torch.Tensor | None:
        """Parameter ``i``'s part of the flat state ``name``, in its declared shape
        (``None`` if the parameter does not keep that state: ``State(when=...)``)."""
        if self.state_shapes[name][i] is None:
            return None
        offsets = self.state_offsets[name]
        return self.state[name][offsets[i] : offsets[i + 1]].view(self.state_shapes[name][i])

    def run_state(self, specs: Sequence[State], run: Run) -> tuple[dict[str, torch.Tensor], bool]:
        """The flat state slices of a run, and whether any of them is new.

        Before a parameter's first update its state is (re)set to each spec's ``init``.
        """
        state, new = {}, False
        fresh = [] if self.started_all(run) else self._fresh_ranges(run)
        for spec in specs:
            new = new or spec.name not in self.state
            flat = self.state_buffer(spec)
            offsets = self.state_offsets[spec.name]
            state[spec.name] = flat[offsets[run.first] : offsets[run.end]]
            for first, end in fresh:
                values = self.param[self.offsets[first] : self.offsets[end]]
                grads = self.grad[self.offsets[first] : self.offsets[end]]
                spec.fill(flat[offsets[first] : offsets[end]], values, grads)
        return state, new or bool(fresh)

    def started_all(self, run: Run) -> bool:
        """Whether every parameter of the run has state (has been updated before)."""
        return all(self.started[run.first : run.end])

    def _fresh_ranges(self, run: Run) -> list[tuple[int, int]]:
        """The ranges ``(first, end)`` of the run's parameters that have no state yet."""
        started = self.started[run.first : run.end]
        return [(run.first + a, run.first + b) for done, a, b in consecutive(started) if not done]

    def finish(self, run: Run) -> None:
        """Count the update of a run, and tell autograd its parameters changed in place.

        Autograd raises when a tensor saved for backward was modified (say, a step between
        forward and backward); the update ran on the buffer, so the parameters' own
        version counters are bumped as if it had run on each ``p`` in place, as
        torch.optim's does.
        """
        self.count(run)
        torch.autograd.graph.increment_version(self.params[run.first : run.end])

    def count(self, run: Run) -> None:
        """One more update for the run's parameters, which all have state from now on."""
        self.steps[run.first : run.end].add_(1)
        # the new count on the CPU; on the device, a new label: updated together from now on
        label = next(self._fresh_label) if self.on_device else run.step
        self.labels[run.first : run.end] = [label] * (run.end - run.first)
        self._labelled_version = self.steps._version
        if not self.started_all(run):
            self.started[run.first : run.end] = [True] * (run.end - run.first)

    def publish(self, entries: dict, specs: Sequence[State], run: Run, with_step: bool) -> None:
        """Make ``entries[p]`` (the optimizer's ``state[p]``) hold views of the flat state."""
        for i in range(run.first, run.end):
            entry = entries[self.params[i]]
            if with_step:
                entry["step"] = self.steps[i]
            entry.update(
                {spec.name: self.state_entry(spec, i) for spec in specs if self.keeps(spec, i)}
            )

    def keeps(self, spec: State, i: int) -> bool:
        """Whether parameter ``i`` keeps the state ``spec`` (see ``State(when=...)``)."""
        return self.state_shapes[spec.name][i] is not None

    def state_entry(self, spec: State, i: int) -> torch.Tensor:
        """What ``optimizer.state[p][spec.name]`` shows: a view of the flat state."""
        return self.state_slot(spec.name, i)

    def adopt(
        self,
        entries: dict,
        specs: Sequence[State],
        with_step: bool,
        saved_steps: Iterable[float | None],
        *,
        edited: bool = False,
    ) -> None:
        """Copy a state in torch.optim's format (``entries[p]``) into the flat state.

        Used for a loaded ``state_dict`` and, with ``edited=True``, for edits of
        ``optimizer.state``. Afterwards every entry holds views of the flat state again.

        - A parameter whose entry is missing, or holds neither a declared tensor nor a
          ``"step"``, has no state: its next update starts afresh, as in torch.optim.
        - Its step count comes from its ``"step"`` entry, else from ``saved_steps``
          (minioptim's checkpoints of optimizers without a ``"step"`` entry; the current
          counts for an edit), else it is 1 (a torch.optim checkpoint with state).
        - A declared tensor that a loaded entry lacks starts at its ``init``; an edited
          entry that lacks one raises, as torch.optim's step would (``KeyError``).
        """
        declared = {spec.name: spec for spec in specs}
        for i, (p, saved) in enumerate(zip(self.params, saved_steps, strict=True)):
            entry = entries.get(p) or {}
            tensors = {k: v for k, v in entry.items() if k in declared and v is not None}
            if not tensors and "step" not in entry:
                self.steps[i] = 0 if saved is None or edited else saved
                self.started[i] = bool(self.steps[i] > 0)
                continue
            for name, spec in declared.items():
                self.state_buffer(spec)
                if not self.keeps(spec, i):
                    continue
                view = self.state_slot(name, i)
                if name not in tensors:
                    if edited:
                        raise KeyError(
                            f"optimizer.state[p] of a parameter of shape {tuple(p.shape)} "
                            f"lost its {name!r} entry. Restore it, or delete the whole entry "
                            "(del optimizer.state[p]) to restart that parameter's state"
                        )
                    flat_view = view.reshape(-1)
                    spec.fill(flat_view, self.slot(self.param, i).reshape(-1),
                              torch.zeros_like(self.slot(self.param, i)).reshape(-1))  # fmt: skip
                    entry[name] = self.state_entry(spec, i)  # shown and saved from now on
                    continue
                value = local(tensors[name])
                if value.shape != view.shape:
                    raise ValueError(
                        f"state[{name!r}] of a parameter of shape {tuple(p.shape)} has shape "
                        f"{tuple(value.shape)}, but this optimizer keeps it with shape "
                        f"{tuple(view.shape)}: the state_dict belongs to another model, or "
                        "to an optimizer that declares this state differently"
                    )
                if value.data_ptr() != view.data_ptr():  # not already our view
                    view.copy_(value)
                entry[name] = self.state_entry(spec, i)
            if "step" in entry:
                self.steps[i] = float(entry["step"])
            elif saved is not None:
                self.steps[i] = saved
            else:
                self.steps[i] = 1.0
            self.started[i] = True
            if with_step:
                entry["step"] = self.steps[i]
            else:
                entry.pop("step", None)
        self.relabel()
