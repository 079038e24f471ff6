"""ShardedBuffer: a bucket of FSDP2 parameters, fused by copying shards in and out.

Under FSDP2 (``torch.distributed.fsdp.fully_shard``) every parameter is a ``DTensor``
whose local shard lives in storage that FSDP owns: it all-gathers the full parameter from
that storage before each forward. So the shards cannot become aliases of our buffer, as
the parameters of a plain bucket do. Instead, each step

1. copies every local shard of the values, and of the gradients that exist, into the flat
   buffers (one ``torch._foreach_copy_`` each),
2. runs the fused update on the flat buffers, as for any bucket, and
3. copies the updated values back into the shards (one more ``_foreach_copy_``).

The update itself is as fused as ever; the price is three extra passes over the bucket's
values and gradients per step (12 bytes per float32 parameter, against Adam's 28).
``optimizer.state[p]`` shows the state as DTensors with the parameter's mesh and
placements, so distributed checkpoints see the same state as torch.optim's.

A rule that takes a ``layout`` gets a :class:`ShardedLayout`: the shapes of this
process's shards, and ``params``, the DTensors that know the global shapes and the mesh.
A per-parameter reduction over it (LAMB's trust ratios) would see only a shard, so such
rules refuse sharded buckets, unless the optimizer declares that it handles shards
(``FusedOptimizer.handles_shards``), as Muon does: :mod:`minioptim.sharded_muon`
gathers each matrix to one process for its orthogonalization.
"""

from __future__ import annotations

import torch

from .flat import DTensor, FlatBuffer, Run, local
from .layout import Layout
from .state import State


class ShardedLayout(Layout):
    """The :class:`~minioptim.Layout` of a sharded slice: ``shapes`` are this process's
    shards; ``params`` are FSDP2's DTensors (global ``shape``, ``device_mesh``,
    ``placements``)."""


class ShardedBuffer(FlatBuffer):
    """One flat buffer for the local shards of a list of ``DTensor`` parameters."""

    sharded = True

    def _attach(self) -> None:
        self._bind()

    def _bind(self) -> None:
        n = len(self.params)
        self.param_views = [self.slot(self.param, i) for i in range(n)]
        self.grad_views = [self.slot(self.grad, i) for i in range(n)]

    @staticmethod
    def shards(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [local(t).detach() for t in tensors]

    def layout(self, first: int = 0, end: int | None = None) -> ShardedLayout:
        """The :class:`ShardedLayout` of parameters ``first .. end - 1`` (cached)."""
        plain = super().layout(first, end)
        if not isinstance(plain, ShardedLayout):
            plain = ShardedLayout(plain.params, plain.offsets, plain.device, plain.shapes)
            self._layouts[first, len(self) if end is None else end] = plain
        return plain

    def check_bindings(self, owner: str) -> list[bool]:
        """Copy the shards of the values and gradients in; skip parameters without one."""
        grads = [p.grad for p in self.params]
        has_grad = [grad is not None for grad in grads]
        torch._foreach_copy_(self.param_views, self.shards(self.params))
        slots = [view for view, has in zip(self.grad_views, has_grad, strict=True) if has]
        if slots:
            torch._foreach_copy_(slots, self.shards([g for g in grads if g is not None]))
        return has_grad

    def finish(self, run: Run) -> None:
        """Count the update and copy the new values back into the shards FSDP reads."""
        self.count(run)
        shards = self.shards(self.params[run.first : run.end])
        torch._foreach_copy_(shards, self.param_views[run.first : run.end])

    def zero_grad(self, set_to_none: bool) -> None:
        """Gradients are FSDP's tensors: zero them in place, or set them to ``None``."""
        grads = [p.grad for p in self.params if p.grad is not None and p.requires_grad]
        for p in self.params:
            if set_to_none or not p.requires_grad:
                p.grad = None
        if not set_to_none and grads:
            torch._foreach_zero_(self.shards(grads))

    def state_entry(self, spec: State, i: int) -> torch.Tensor:
        """Parameter-shaped state as a DTensor over the parameter's mesh, like torch.optim's."""
        view = self.state_slot(spec.name, i)
        p = self.params[i]
        if spec.shape is not None:
            return view
        return DTensor.from_local(
            view, p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride()
        )
