"""Check on a CPU that an optimizer's step can be captured in a CUDA graph.

``torch.cuda.graph`` records the kernels that a piece of Python launches, with their
arguments: the addresses of tensors and the values of Python numbers. A replay runs those
kernels again, writing into the same memory, and none of the Python. So a captured
``optimizer.step()`` replays correctly only if everything that changes from step to step
(the step count, a scheduled learning rate) lives in device memory, and it may not read a
device value on the host at all (``item()``, ``bool(tensor)``): a capture raises there.

:class:`Graph` plays the same game one level up, with ATen operators for kernels, so a
rule (a student's ``update`` too) can be checked on a laptop:

>>> p = torch.zeros(3, requires_grad=True)
>>> optimizer = minioptim.Adam([p], lr=0.1, capturable=True)
>>> p.grad = torch.ones(3)
>>> optimizer.step()  # warm-up: the first step fills the state
>>> graph = Graph()
>>> with graph.capturing():
...     optimizer.step()
>>> graph.replay()  # the next step, as a CUDA graph would run it
>>> optimizer.state[p]["step"]  # counted on the device by the replay
tensor(3.)

While it captures, every operator call is recorded with its arguments (tensors by
identity, numbers by value) and a host read raises :class:`HostRead`. :meth:`Graph.replay`
calls the operators again and writes each result into the tensor the capture produced
(a graph's fixed addresses), leaving autograd's version counters alone, as kernels do. A
compiled rule's call is recorded as one kernel with its arguments frozen (dynamo does not
run under a dispatch mode; on a GPU it is a few Triton kernels), and
``optimizer._capturing()`` says True, as ``torch.cuda.is_current_stream_capturing()``
would. Tensors named as ``host`` (and what is computed from them alone) stand for the
CPU tensors of a CUDA program: their operators run at capture time only, and may be read.

Unlike a CUDA graph, the capture runs the step (a CUDA capture only records it). What
this cannot see: a bug in the generated kernels themselves; minioptim's CUDA tests
capture for real (``tests/test_capture.py``).
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils._python_dispatch import TorchDispatchMode, _pop_mode_temporarily
from torch.utils._pytree import tree_leaves

from minioptim import FusedOptimizer
from minioptim.compiled import CompiledRule

# Operators that hand a tensor's value to the host: a capture cannot wait for the device.
HOST_READS = {
    torch.ops.aten._local_scalar_dense.default,
    torch.ops.aten.is_nonzero.default,
    torch.ops.aten.equal.default,
}


class HostRead(RuntimeError):
    """A device value was read on the host during a capture."""


class Graph(TorchDispatchMode):
    """Records the operators run inside ``with graph.capturing():``; replays them."""

    def __init__(self, host: list[torch.Tensor] = ()) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.host = {t.untyped_storage().data_ptr() for t in host}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if tensors and all(t.untyped_storage().data_ptr() in self.host for t in tensors):
            out = func(*args, **kwargs)  # on the host: runs now, never replayed
            outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
            self.host.update(t.untyped_storage().data_ptr() for t in outs)
            return out
        if func in HOST_READS:
            raise HostRead(f"{func} reads a device value on the host during a capture")
        out = func(*args, **kwargs)
        self.calls.append((func, args, kwargs, out))
        return out

    @contextlib.contextmanager
    def capturing(self, announced: bool = True):
        """Capture what runs inside: operators, compiled rules; and ``_capturing()`` says
        so, unless not ``announced`` (to see what a capture that went unnoticed replays)."""
        graph = self
        call = CompiledRule.__call__

        def recorded(rule, *args, **kwargs):
            if rule.failed:  # it runs eagerly: operator by operator
                return call(rule, *args, **kwargs)
            args = tuple(dict(a) if type(a) is dict else a for a in args)  # numbers frozen
            kwargs = {k: dict(v) if type(v) is dict else v for k, v in kwargs.items()}
            with _pop_mode_temporarily():
                out = call(rule, *args, **kwargs)
            graph.calls.append((call, (rule, *args), kwargs, out))
            return out

        with (
            _patch(CompiledRule, "__call__", recorded),
            _patch(FusedOptimizer, "_capturing", lambda _: announced),
            self,
        ):
            yield self

    def replay(self) -> None:
        """Run every recorded call again; results land in the captured outputs. Like a
        graph's kernels, the calls leave autograd's version counters alone."""
        with torch._C._AutoDispatchBelowADInplaceOrView():
            for func, args, kwargs, out in self.calls:
                result = func(*args, **kwargs)
                for captured, new in zip(tree_leaves(out), tree_leaves(result), strict=True):
                    if isinstance(captured, torch.Tensor) and not _same_memory(captured, new):
                        captured.copy_(new)


def _same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``b`` is ``a`` or a view of the same memory (in-place and view operators)."""
    return a is b or a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


@contextlib.contextmanager
def _patch(owner, name, value):
    original = owner.__dict__[name]
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
