"""What the benchmark optimizes: parameter sets, and a small transformer to train.

A parameter set is a list of shapes. The optimizers are element-wise (Muon excepted), so
only the number of tensors and their sizes matter; Muon needs 2-d matrices, so sets made
of matrices only say so (:attr:`ParameterSet.matrices`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

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


# -- the training case ------------------------------------------------------------------------


class TinyGPT(nn.Module):
    """A small causal transformer language model: embeddings, pre-norm blocks, a head."""

    def __init__(self, vocab: int, width: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.zeros(context, width))
        block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        x = self.token(tokens) + self.position[:length]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device)
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))


@dataclass(frozen=True)
class TrainingCase:
    """The size of the model and of its batches, for one ``scale``."""

    width: int
    layers: int = 8
    heads: int = 8
    vocab: int = 8192
    context: int = 256
    batch: int = 16

    @classmethod
    def at(cls, scale: float) -> TrainingCase:
        """8 layers of width 512 at ``scale=1`` (33M parameters); narrower below.

        The width (a multiple of the 8 heads, at least 16) shrinks with ``sqrt(scale)``,
        so the number of parameters about like ``scale``, and so does the batch.
        """
        width = max(16, 8 * round(64 * math.sqrt(scale)))
        return cls(width=width, batch=max(1, round(16 * scale)))

    def model(self, seed: int, device: str) -> TinyGPT:
        """The model, initialized the same for a given seed."""
        torch.manual_seed(seed)
        return TinyGPT(self.vocab, self.width, self.layers, self.heads, self.context).to(device)

    def batch_of_tokens(self, seed: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Random tokens and their next-token targets (the same for a given seed)."""
        generator = torch.Generator().manual_seed(seed)
        tokens = torch.randint(self.vocab, (self.batch, self.context + 1), generator=generator)
        tokens = tokens.to(device)
        return tokens[:, :-1], tokens[:, 1:]
