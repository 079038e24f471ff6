"""The end-to-end case: one training iteration of a small transformer language model
(zero_grad, forward, backward, step), with minioptim's AdamW and with torch's.

Where the optimizer step is a small part of an iteration, this is the figure a user
sees; where it is not (small models, many tensors, a fast GPU), it shows how much of
the iteration the optimizer's overhead takes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .contenders import OPTIMIZERS, Contender
from .measure import Timing


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


class Trainer:
    """A model, its optimizer and a fixed batch: one call is one training iteration.

    On CUDA the forward pass runs under bfloat16 autocast, as one trains there; the loss
    stays on the device (no ``.item()``, which would synchronize inside the timing).
    """

    def __init__(self, contender: Contender, case: TrainingCase, timing: Timing) -> None:
        self.model = case.model(timing.seed, timing.device)
        self.optimizer = contender.build(list(self.model.parameters()))
        self.inputs, self.targets = case.batch_of_tokens(timing.seed, timing.device)
        self.device_type = torch.device(timing.device).type
        self.loss = torch.tensor(math.nan)

    def __call__(self) -> None:
        self.optimizer.zero_grad()
        with torch.autocast(self.device_type, torch.bfloat16, enabled=self.device_type == "cuda"):
            logits = self.model(self.inputs)
        self.loss = F.cross_entropy(logits.flatten(0, 1).float(), self.targets.flatten())
        self.loss.backward()
        self.loss = self.loss.detach()
        self.optimizer.step()


def suite(case: TrainingCase, timing: Timing) -> list[dict[str, Any]]:
    """ms per training iteration with minioptim's AdamW and torch's fused and foreach
    AdamW, each on its own copy of the same model and batch; and the loss each reaches
    after the same number of iterations (they should agree to rounding)."""
    contenders = OPTIMIZERS["adamw"].contenders(reference=False, only=("foreach", "fused"))
    trainers = {c.label: Trainer(c, case, timing) for c in contenders}
    for trainer in trainers.values():
        for _ in range(timing.warmup + 1):
            trainer()
    samples = timing.round_robin(trainers)
    n_params = sum(p.numel() for p in trainers["minioptim"].model.parameters())
    torch_labels = {c.label for c in contenders if c.torch}
    best = min(s.seconds for label, s in samples.items() if label in torch_labels)
    return [
        dict(
            kind="training",
            contender=label,
            width=case.width,
            layers=case.layers,
            batch=case.batch,
            context=case.context,
            n_params=n_params,
            ms=sample.seconds * 1e3,
            host_ms=sample.host_seconds * 1e3,
            vs_torch=sample.seconds / best,
            loss=trainers[label].loss.item(),
        )
        for label, sample in samples.items()
    ]
