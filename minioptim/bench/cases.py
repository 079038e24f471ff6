"""What the benchmark optimizes: parameter sets.

A parameter set is a list of shapes. The optimizers are element-wise (Muon excepted), so
only the number of tensors and their sizes matter; Muon needs 2-d matrices, so sets made
of matrices only say so (:attr:`ParameterSet.matrices`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

Shape = tuple[int, ...]


def many_small_shapes() -> list[Shape]:
    """2000 tensors of 64 x 64 (8.2M parameters): where per-tensor overhead dominates."""
    return [(64, 64)] * 2000


def convnet_shapes(layers_per_stage: tuple[int, ...] = (18, 18, 12, 2)) -> list[Shape]:
    """A convnet-like mix: 164 tensors, 14.3M parameters, from 64 to 2.4M elements each.

    A 7x7 stem, then stages of 64, 128, 256 and 512 channels made of 3x3 convolutions,
    each followed by a batch norm (weight and bias), a 1x1 convolution where the width
    changes, and a final linear classifier with 1000 outputs.
    """
    shapes: list[Shape] = [(64, 3, 7, 7), (64,), (64,)]
    c_in = 64
    for width, layers in zip((64, 128, 256, 512), layers_per_stage, strict=True):
        if width != c_in:
            shapes += [(width, c_in, 1, 1), (width,), (width,)]
        for _ in range(layers):
            shapes += [(width, c_in, 3, 3), (width,), (width,)]
            c_in = width
    return shapes + [(1000, c_in), (1000,)]


def few_large_shapes() -> list[Shape]:
    """4 tensors of 2048 x 2048 (16.8M parameters): pure memory bandwidth."""
    return [(2048, 2048)] * 4


def llm_shapes(width: int = 1024, layers: int = 24, vocab: int = 50304, context: int = 1024):
    """A GPT-2-medium-like language model: 292 tensors, 355M parameters.

    Token and position embeddings; per layer two layer norms (weight and bias), the
    attention's query-key-value and output projections and the MLP's two matrices, each
    with a bias; a final layer norm. The output layer shares the token embedding.
    """
    shapes: list[Shape] = [(vocab, width), (context, width)]
    for _ in range(layers):
        shapes += [(width,), (width,), (3 * width, width), (3 * width,), (width, width)]
        shapes += [(width,), (width,), (width,), (4 * width, width), (4 * width,)]
        shapes += [(width, 4 * width), (width,)]
    return shapes + [(width,), (width,)]


@dataclass(frozen=True)
class ParameterSet:
    """A named list of shapes; ``matrices``: every tensor is 2-d (Muon can run on it)."""

    name: str
    shapes: Callable[[], list[Shape]]
    matrices: bool = False


SETS: dict[str, ParameterSet] = {
    s.name: s
    for s in (
        ParameterSet("many-small", many_small_shapes, matrices=True),
        ParameterSet("mixed", convnet_shapes),
        ParameterSet("few-large", few_large_shapes, matrices=True),
        ParameterSet("llm", llm_shapes),
    )
}


def scaled(shapes: list[Shape], scale: float) -> list[Shape]:
    """Shrink (or grow) every tensor by ``scale``, keeping the number of tensors.

    At ``scale != 1`` a matrix stays a matrix, each side multiplied by ``sqrt(scale)``
    (so Muon still runs on it); any other tensor of ``n`` elements becomes a 1-d tensor
    of ``round(n * scale)``. Every tensor keeps at least one element.
    """
    if scale == 1:
        return shapes
    side = math.sqrt(scale)
    return [
        tuple(max(1, round(n * side)) for n in shape)
        if len(shape) == 2
        else (max(1, round(math.prod(shape) * scale)),)
        for shape in shapes
    ]


def numel(shapes: Iterable[Shape]) -> int:
    """Total number of elements of tensors with these shapes."""
    return sum(math.prod(shape) for shape in shapes)


def random_tensors(
    shapes: list[Shape], seed: int, device: str, dtype: torch.dtype = torch.float32
) -> list[torch.Tensor]:
    """Standard normal tensors, the same for a given seed on every device."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).to(device, dtype) for shape in shapes]


def make_params(values: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fresh leaf parameters: copies of ``values``, with copies of ``grads`` as ``.grad``."""
    params = []
    for value, grad in zip(values, grads, strict=True):
        p = value.clone().requires_grad_()
        p.grad = grad.clone()
        params.append(p)
    return params
