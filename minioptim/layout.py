r"""Layout: what an update sees of the parameters behind its flat slice.

A flat rule (SGD, Adam, Lion) never needs it. A shape-aware rule adds a ``layout``
argument to its ``update`` and gets one of these for the slice it updates::

    def update(self, group, param, grad, state, step, layout):
        # LAMB's trust ratio, one per parameter, in a constant number of kernels
        ratio = layout.norm(param) / layout.norm(direction)    # shape (len(layout),)
        param.add_(layout.expand(ratio) * direction, alpha=-group["lr"])

Per-tensor reductions (:meth:`Layout.sum`, :meth:`Layout.norm`) run ``index_add_`` over
segment ids: the same few kernels for 3 parameters or 3,000. :meth:`Layout.by_shape`
gives same-shaped parameters as one batched tensor (for ``torch.bmm``), a view into the
flat buffer: the bucket stores same-shaped parameters next to each other.

State of another shape than the parameters (per-row statistics, Adafactor's factored
second moments, a state that only matrices keep) has a layout of its own,
``layout.of("row_var")``, with the same methods: its ``by_shape`` and ``batch`` group by
the *parameters'* shapes, so the batches of a state line up with those of ``grad``::

    rows = layout.of("row_var")
    for shape, indices, g in layout.by_shape(grad):       # g: (k, *shape)
        if len(shape) > 1:
            r = rows.batch(state["row_var"], indices)     # (k, *shape[:-1], 1)
            r.lerp_(g.square().mean(dim=-1, keepdim=True), 0.1)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch


def consecutive(keys: Sequence) -> list[tuple[object, int, int]]:
    """``(key, first, end)`` for each maximal run ``keys[first:end]`` of equal neighbours,
    in order: ``consecutive("aab")`` is ``[("a", 0, 2), ("b", 2, 3)]``."""
    spans = []  # a plain loop, not itertools.groupby: torch.compile traces it (Layout.by_shape)
    for i, key in enumerate(keys):
        if spans and spans[-1][0] == key:
            spans[-1] = (key, spans[-1][1], i + 1)
        else:
            spans.append((key, i, i + 1))
    return spans


class Layout:
    """The parameters of a flat slice: which ones, where, and in which shapes.

    Attributes
    ----------
    params:
        The parameters, in buffer order.
    shapes:
        The shapes of what the slice holds for each parameter: the parameters' shapes,
        or, in the layout of a state (:meth:`of`), the state's shapes, ``None`` for
        parameters that do not keep it.
    offsets:
        ``offsets[i]:offsets[i + 1]`` is parameter ``i``'s part of the slice;
        ``offsets[-1]`` is the slice's length.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        offsets: Sequence[int],
        device: torch.device,
        shapes: Sequence[torch.Size | None] | None = None,
        *,
        param_shapes: Sequence[torch.Size] | None = None,
        states: Callable[[str], Sequence[torch.Size | None]] | None = None,
    ) -> None:
        self.params = tuple(params)
        self.shapes = tuple(p.shape for p in params) if shapes is None else tuple(shapes)
        self.param_shapes = self.shapes if param_shapes is None else tuple(param_shapes)
        self.offsets = tuple(offsets)
        self.device = device
        self._states = states
        self._segment_ids: torch.Tensor | None = None
        self._sizes: torch.Tensor | None = None

    def of(self, name: str) -> Layout:
        """The layout of the state ``name`` over the same parameters (see the module's doc).

        Its ``shapes`` are the state's shapes (``None`` where a parameter does not keep
        it); ``views``, ``by_shape``, ``batch`` and the reductions work on that state's
        flat slice, ``state[name]``.
        """
        if self._states is None:
            raise KeyError(f"layout.of({name!r}): this layout has no state layouts")
        shapes = list(self._states(name))
        sizes = (0 if shape is None else shape.numel() for shape in shapes)
        offsets = [0, *itertools.accumulate(sizes)]
        return Layout(self.params, offsets, self.device, shapes, param_shapes=self.param_shapes)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def numel(self) -> int:
        """The number of elements of the slice."""
        return self.offsets[-1]

    @property
    def sizes(self) -> torch.Tensor:
        """The number of elements of each parameter, as an ``int64`` tensor on the device.

        For arithmetic in the slice's dtype, cast it (``layout.sizes.to(flat.dtype)``),
        as :meth:`mean` and :meth:`rms` do: ``sizes.sqrt()`` alone is float32."""
        if self._sizes is None:
            sizes = [b - a for a, b in itertools.pairwise(self.offsets)]
            self._sizes = torch.tensor(sizes, device=self.device)
        return self._sizes

    @property
    def segment_ids(self) -> torch.Tensor:
        """For each element of the slice, the index of its parameter (``int64``)."""
        if self._segment_ids is None:
            ids = torch.arange(len(self), device=self.device)
            self._segment_ids = ids.repeat_interleave(self.sizes, output_size=self.numel)
        return self._segment_ids

    def views(
        self, flat: torch.Tensor, shapes: Sequence[Sequence[int]] | None = None
    ) -> list[torch.Tensor | None]:
        """Per-parameter views of a flat tensor: in the parameters' shapes, or in ``shapes``.

        ``flat`` may be the slice of ``param``, ``grad`` or any state shaped like them; a
        state with one number per parameter (``State(..., shape=())``) gives 0-d views.
        Writing to a view writes to ``flat``. In a state's layout (:meth:`of`), a
        parameter that keeps no such state gets ``None``.
        """
        if shapes is None:
            if flat.numel() == self.numel:
                shapes = self.shapes
            elif flat.numel() == len(self):
                shapes = [()] * len(self)
            else:
                raise ValueError(
                    f"a flat tensor of {flat.numel()} elements is neither shaped like these "
                    f"{len(self)} parameters ({self.numel} elements) nor one number per "
                    "parameter; for a state of another shape use layout.of(name).views(...), "
                    "or pass shapes=[...]"
                )
        sizes = [0 if shape is None else torch.Size(shape).numel() for shape in shapes]
        pieces = flat.split(sizes)
        return [
            None if shape is None else piece.view(shape)
            for piece, shape in zip(pieces, shapes, strict=True)
        ]

    def sum(self, flat: torch.Tensor) -> torch.Tensor:
        """Per-parameter sums of a flat tensor: shape ``(len(layout),)``, one ``index_add_``."""
        out = torch.zeros(len(self), dtype=flat.dtype, device=flat.device)
        return out.index_add_(0, self.segment_ids, flat)

    def norm(self, flat: torch.Tensor) -> torch.Tensor:
        """Per-parameter Euclidean (Frobenius) norms of a flat tensor: ``sqrt(sum(x**2))``."""
        return self.sum(flat * flat).sqrt_()

    def mean(self, flat: torch.Tensor) -> torch.Tensor:
        """Per-parameter means of a flat tensor, in its dtype."""
        return self.sum(flat).div_(self.sizes.to(flat.dtype))

    def rms(self, flat: torch.Tensor) -> torch.Tensor:
        """Per-parameter root mean squares of a flat tensor: ``sqrt(mean(x**2))``."""
        return self.mean(flat * flat).sqrt_()

    def expand(self, per_param: torch.Tensor) -> torch.Tensor:
        """Broadcast one value per parameter back to the flat slice (the inverse of sum)."""
        return per_param.index_select(0, self.segment_ids)  # a gather: one kernel

    def by_shape(self, flat: torch.Tensor) -> list[tuple[torch.Size, range, torch.Tensor]]:
        """Same-shaped parameters as batched views: ``(shape, indices, tensor)`` per shape.

        ``tensor`` has shape ``(len(indices), *shape)`` and is a view of ``flat`` (no
        copy): writing to it updates those parameters. ``indices`` are positions in
        :attr:`params`. In a state's layout (:meth:`of`) the batches follow the
        parameters' shapes, ``shape`` is the state's, and parameters that keep no such
        state are left out.
        """
        self._check_flat(flat, "by_shape")
        batches = []
        for _, first, end in consecutive(self.param_shapes):
            if self.shapes[first] is not None:
                indices = range(first, end)
                batches.append((self.shapes[first], indices, self.batch(flat, indices)))
        return batches

    def batch(self, flat: torch.Tensor, indices: range) -> torch.Tensor:
        """The parameters ``indices`` (consecutive, of one shape) as one batched view of
        ``flat``, of shape ``(len(indices), *shape)``: how a state's batch is found for
        the indices that ``layout.by_shape(grad)`` gave."""
        self._check_flat(flat, "batch")
        shape = self.shapes[indices.start]
        same = all(self.param_shapes[i] == self.param_shapes[indices.start] for i in indices)
        if shape is None or indices.step != 1 or not same:
            raise ValueError(
                f"batch takes consecutive parameters of one shape that keep this state, got "
                f"indices {indices}: pass the indices that layout.by_shape(grad) returns"
            )
        start, stop = self.offsets[indices.start], self.offsets[indices.stop]
        return flat[start:stop].view(len(indices), *shape)

    def _check_flat(self, flat: torch.Tensor, method: str) -> None:
        if flat.numel() != self.numel:
            raise ValueError(
                f"{method} takes a flat tensor of the {self.numel} elements this layout "
                f"describes, got {flat.numel()}: for a state of another shape than the "
                f"parameters use layout.of(name).{method}(state[name])"
            )
