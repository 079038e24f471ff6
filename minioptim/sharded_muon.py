r"""Muon on FSDP2's shards: each matrix is gathered to one owner, orthogonalized, scattered.

Muon's momentum and weight decay are element-wise, so they run on this process's rows of
each matrix like any rule. Its orthogonalization :math:`\mathrm{NS}(U)` needs the whole
matrix :math:`U`. FSDP2 splits every matrix by rows (``Shard(0)``, the rows in
``torch.chunk``'s pieces: process :math:`r` of :math:`W` holds rows
:math:`r\lceil A/W\rceil` up to :math:`(r+1)\lceil A/W\rceil`, the last ones may hold
fewer or none). For the matrices of one update, each step:

1. **owners** (:func:`owners`): every matrix gets one process that orthogonalizes it,
   chosen from the global shapes only, so all processes agree without talking: the
   matrix of largest Newton–Schulz cost first, to the process with the least work so far;
2. **gather**: one ``all_to_all`` sends every process's rows of each matrix, in
   bfloat16 (the precision Newton–Schulz runs in anyway), to the matrix's owner;
3. **orthogonalize**: each owner runs Newton–Schulz on its matrices, same-shaped ones as
   one batch when the caller batches;
4. **scatter**: a second ``all_to_all`` returns each process's rows of the results.

Each matrix is orthogonalized exactly once, and on the same values as without sharding,
so the update is the single-process one. A matrix of :math:`N` elements whose owner
holds :math:`n_o` of them costs :math:`2(N - n_o) \approx 2N(W-1)/W` elements on the
wire, against :math:`(W-1)N` for an all-gather of the whole matrix to every process
(:func:`traffic`).

References: Liu et al., "Muon is Scalable for LLM Training", 2025 (distributed Muon);
Ahn et al., "Dion: Distributed Orthonormalized Updates", 2025 (its communication cost).
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from .sharded import ShardedLayout

#: The dtype of the gathered and scattered matrices: Newton–Schulz's own (see
#: :func:`minioptim.functional.newton_schulz`), so casting before sending changes nothing.
WIRE_DTYPE = torch.bfloat16


def newton_schulz_flops(shape: Sequence[int], steps: int = 5) -> int:
    r"""Multiply-adds times two of ``steps`` quintic Newton–Schulz steps on an
    :math:`A \times B` matrix, :math:`a = \min(A, B)`, :math:`b = \max(A, B)`:
    :math:`X X^\top` (:math:`2a^2b`), :math:`A^2` (:math:`2a^3`), the product with
    :math:`X` (:math:`2a^2b`)."""
    a, b = sorted(shape)
    return steps * (4 * a * a * b + 2 * a**3)


@functools.cache
def owners(shapes: tuple[torch.Size, ...], world_size: int) -> tuple[int, ...]:
    """The process that orthogonalizes each matrix: greedy, largest cost first.

    Matrices are taken in order of decreasing :func:`newton_schulz_flops` (ties: in
    order), and each goes to the process with the fewest FLOPs so far (ties: the lowest
    rank). The largest matrix then bounds the imbalance (Graham's LPT rule, at most 4/3
    of the best split).
    """
    load = [(0, rank) for rank in range(world_size)]
    owner = [0] * len(shapes)
    for i in sorted(range(len(shapes)), key=lambda i: -newton_schulz_flops(shapes[i])):
        work, rank = heapq.heappop(load)
        owner[i] = rank
        heapq.heappush(load, (work + newton_schulz_flops(shapes[i]), rank))
    return tuple(owner)


def row_counts(rows: int, world_size: int) -> list[int]:
    """How many rows of a matrix each process holds under ``Shard(0)`` (torch.chunk's split)."""
    chunk = -(-rows // world_size)
    return [max(0, min(chunk, rows - rank * chunk)) for rank in range(world_size)]


def traffic(shapes: Sequence[torch.Size], world_size: int) -> dict[str, int]:
    """Elements sent between processes per step, summed over all processes.

    ``"gather and scatter"``: this module's two all-to-alls, :math:`2(N - n_o)` per
    matrix. ``"all-gather"``: every process receiving every matrix whole, :math:`(W-1)N`.
    """
    shapes = tuple(torch.Size(shape) for shape in shapes)
    ours = naive = 0
    for shape, owner in zip(shapes, owners(shapes, world_size), strict=True):
        numel, columns = shape.numel(), shape[1]
        ours += 2 * (numel - row_counts(shape[0], world_size)[owner] * columns)
        naive += (world_size - 1) * numel
    return {"gather and scatter": ours, "all-gather": naive}


def _check_sharding(layout: ShardedLayout) -> None:
    from torch.distributed.tensor import Shard

    mesh = layout.params[0].device_mesh
    for i, p in enumerate(layout.params):
        placements = tuple(p.placements)
        if p.device_mesh != mesh or mesh.ndim != 1 or placements != (Shard(0),):
            raise ValueError(
                f"Muon under FSDP2 needs every matrix sharded by rows over one mesh "
                f"(fully_shard's default placement, Shard(0)); a matrix of shape "
                f"{tuple(p.shape)} has placements {placements} on a {p.device_mesh.ndim}-d mesh. "
                "Call fully_shard without shard_placement_fn, on a 1-d mesh"
            )
        rows = row_counts(p.shape[0], mesh.size())[mesh.get_local_rank()]
        if layout.shapes[i] != (rows, p.shape[1]):
            raise ValueError(
                f"A matrix of shape {tuple(p.shape)}: this process holds a shard of "
                f"shape {tuple(layout.shapes[i])}, but Shard(0) over {mesh.size()} "
                f"processes gives it {rows} rows. Muon expects FSDP2's torch.chunk split"
            )


def orthogonalized(
    param: torch.Tensor,
    direction: torch.Tensor,
    layout: ShardedLayout,
    orthogonalize: Callable[[torch.Tensor], torch.Tensor],
    batched: bool,
) -> Iterator[tuple[torch.Size, torch.Tensor, torch.Tensor]]:
    """``(global shape, p, O)`` for each matrix: this process's rows ``p`` of ``param``
    and ``O`` of the orthogonalized ``direction`` (both flat slices in ``layout``).

    ``orthogonalize`` maps a matrix, or a ``(k, A, B)`` batch if ``batched``, to its
    Newton–Schulz result.
    """
    _check_sharding(layout)
    mesh = layout.params[0].device_mesh
    group, world, rank = mesh.get_group(), mesh.size(), mesh.get_local_rank()
    everyone = range(world)
    shapes = tuple(p.shape for p in layout.params)
    owner = owners(shapes, world)
    owned_by = [[i for i in range(len(shapes)) if owner[i] == r] for r in everyone]
    mine = owned_by[rank]
    rows = [row_counts(shape[0], world) for shape in shapes]
    first_row = [list(itertools.accumulate(counts, initial=0)) for counts in rows]
    pieces = layout.views(direction)

    # gather: to each owner, this process's rows of its matrices
    received = _all_to_all(
        [[pieces[i] for i in owned_by[dest]] for dest in everyone],
        [[rows[i][source] * shapes[i][1] for i in mine] for source in everyone],
        group,
        param.device,
    )
    whole = {
        i: torch.cat([received[source][k] for source in everyone]).view(shapes[i])
        for k, i in enumerate(mine)
    }

    # orthogonalize: each owned matrix once; same-shaped ones as one batch if batched
    if batched:
        result = {}
        for batch in _same_shape_runs(mine, shapes):
            out = orthogonalize(torch.stack([whole[i] for i in batch]))
            result.update(zip(batch, out.unbind(), strict=True))
    else:
        result = {i: orthogonalize(whole[i]) for i in mine}

    # scatter: to each process, its rows of the results this process owns
    back = _all_to_all(
        [
            [result[i][first_row[i][dest] : first_row[i][dest + 1]] for i in mine]
            for dest in everyone
        ],
        [[pieces[i].numel() for i in owned_by[source]] for source in everyone],
        group,
        param.device,
    )
    from_owner = [iter(results) for results in back]
    for i, p in enumerate(layout.views(param)):
        yield shapes[i], p, next(from_owner[owner[i]]).view(p.shape)


def _same_shape_runs(indices: list[int], shapes: Sequence[torch.Size]) -> list[list[int]]:
    """``indices`` split where the shape changes (the buffer keeps same shapes together)."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and shapes[runs[-1][-1]] == shapes[i]:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _all_to_all(
    send: list[list[torch.Tensor]],
    receive: list[list[int]],
    group: dist.ProcessGroup,
    device: torch.device,
) -> list[list[torch.Tensor]]:
    """One ``all_to_all_single`` in :data:`WIRE_DTYPE`: the tensors ``send[d]`` go to
    process ``d``; from process ``s`` arrive pieces of ``receive[s]`` elements, returned
    as flat views of one buffer."""
    outgoing = torch.cat(
        [torch.empty(0, dtype=WIRE_DTYPE, device=device)]
        + [t.reshape(-1).to(WIRE_DTYPE) for tensors in send for t in tensors]
    )
    incoming = outgoing.new_empty(sum(map(sum, receive)))
    sent = [sum(t.numel() for t in tensors) for tensors in send]
    dist.all_to_all_single(incoming, outgoing, [sum(r) for r in receive], sent, group=group)
    pieces = iter(incoming.split([n for counts in receive for n in counts]))
    return [[next(pieces) for _ in counts] for counts in receive]
