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
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch


class Layout:
    """The parameters of a flat slice: which ones, where, and in which shapes.

    Attributes
    ----------
    params:
        The parameters, in buffer order.
    shapes:
        Their shapes.
    offsets:
        ``offsets[i]:offsets[i + 1]`` is parameter ``i``'s part of the slice;
        ``offsets[-1]`` is the slice's length.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        offsets: Sequence[int],
        device: torch.device,
        shapes: Sequence[torch.Size] | None = None,
    ) -> None:
        self.params = tuple(params)
        self.shapes = tuple(p.shape for p in params) if shapes is None else tuple(shapes)
        self.offsets = tuple(offsets)
        self.device = device
        self._segment_ids: torch.Tensor | None = None
        self._sizes: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.params)

    @property
    def numel(self) -> int:
        """The number of elements of the slice."""
        return self.offsets[-1]

    @property
    def sizes(self) -> torch.Tensor:
        """The number of elements of each parameter, as a tensor on the device."""
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
    ) -> list[torch.Tensor]:
        """Per-parameter views of a flat tensor: in the parameters' shapes, or in ``shapes``.

        ``flat`` may be the slice of ``param``, ``grad`` or any state shaped like them; a
        state with one number per parameter (``State(..., shape=())``) gives 0-d views.
        Writing to a view writes to ``flat``.
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
                    "parameter; pass shapes=[...]"
                )
        sizes = [torch.Size(shape).numel() for shape in shapes]
        pieces = flat.split(sizes)
        return [piece.view(shape) for piece, shape in zip(pieces, shapes, strict=True)]

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
        :attr:`params`.
        """
        if flat.numel() != self.numel:
            raise ValueError(
                f"by_shape takes a flat tensor shaped like these parameters ({self.numel} "
                f"elements), got {flat.numel()}: for state of other shapes use "
                "layout.views(flat, shapes=[...])"
            )
        batches = []
        first = 0
        for shape, group in itertools.groupby(self.shapes):
            end = first + sum(1 for _ in group)
            start, stop = self.offsets[first], self.offsets[end]
            batches.append((shape, range(first, end), flat[start:stop].view(end - first, *shape)))
            first = end
        return batches
