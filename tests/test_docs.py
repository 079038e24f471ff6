"""The examples in the README and the API page run and do what the text says."""

import re
from pathlib import Path

import torch
from conftest import make_tensors

from minioptim.testing import assert_same_trajectory

ROOT = Path(__file__).resolve().parent.parent


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def run_block(path: Path, index: int) -> dict:
    namespace: dict = {}
    exec(compile(python_blocks(path)[index], f"{path.name} block {index}", "exec"), namespace)
    return namespace


def test_api_page_adagrad_matches_torch_and_lars_matches_a_per_tensor_loop():
    ns = run_block(ROOT / "book" / "api.md", 0)
    assert_same_trajectory(
        lambda ps: ns["Adagrad"](ps, lr=0.1, initial=0.2),
        lambda ps: torch.optim.Adagrad(ps, lr=0.1, initial_accumulator_value=0.2, foreach=False),
        make_tensors(torch.float64),
        steps=15,
        compare_state=False,  # the example keeps no "step" entry logic of its own
        rtol=0,
        atol=0,
    )

    class LoopLARS(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1, trust=0.001):
            super().__init__(params, dict(lr=lr, trust=trust))

        @torch.no_grad()
        def step(self):
            for group in self.param_groups:
                for p in group["params"]:
                    ratio = group["trust"] * p.norm() / p.grad.norm()
                    p.sub_(group["lr"] * ratio * p.grad)

    assert_same_trajectory(
        lambda ps: ns["LARS"](ps, lr=0.5, trust=0.01),
        lambda ps: LoopLARS(ps, lr=0.5, trust=0.01),
        make_tensors(torch.float64),
        steps=15,
        compare_state=False,
        rtol=1e-12,
        atol=1e-14,
    )


def test_every_complete_readme_example_runs():
    """Blocks that start with an import are whole programs; the others are fragments
    (a method of a LightningModule, a Trainer call) shown inside a pattern."""
    blocks = python_blocks(ROOT / "README.md")
    complete = [i for i, block in enumerate(blocks) if block.startswith("import")]
    assert len(complete) >= 3
    for index in complete:
        run_block(ROOT / "README.md", index)


def test_api_page_rule_built_from_the_public_kernels_keeps_the_fast_path_and_matches_torch():
    ns = run_block(ROOT / "book" / "api.md", 1)
    optimizer = ns["LanguageModelAdamW"]([torch.zeros(3, requires_grad=True)])
    assert optimizer.impl == "fast"
    assert_same_trajectory(
        lambda ps: ns["LanguageModelAdamW"](ps, lr=0.01),
        lambda ps: torch.optim.AdamW(
            ps, lr=0.01, betas=(0.9, 0.95), weight_decay=0.1, foreach=False
        ),
        make_tensors(torch.float64),
        steps=15,
        rtol=1e-12,
        atol=1e-14,
    )
