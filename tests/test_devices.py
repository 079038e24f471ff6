"""The same checks on every device this machine has (CPU always; CUDA and MPS when present).

On a CPU-only machine the accelerator cases are skipped, saying so; on a GPU machine they
run the equivalence, AMP and cross-device checkpoint tests on the device.
"""

import io

import pytest
import torch
from cases import CASES
from conftest import ACCELERATOR_TOLERANCES
from torch import nn

import minioptim
from minioptim.testing import assert_same_trajectory

ACCELERATORS = [
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
    ),
    pytest.param(
        "mps", marks=pytest.mark.skipif(not torch.backends.mps.is_available(), reason="no MPS")
    ),
]
DEVICES = ["cpu", *ACCELERATORS]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_reference_on_device(device, case):
    """Every optimizer of the registry against its independent reference (torch.optim or
    the per-tensor definition) on the device, with the default (fast) path."""
    tolerance = (
        case.tolerance("fast", torch.float32)
        if device == "cpu"
        else ACCELERATOR_TOLERANCES[torch.float32]
    )
    assert_same_trajectory(
        lambda ps: case.ours(ps),
        case.theirs,
        [t.to(device) for t in case.tensors(torch.float32)],
        steps=10,
        **tolerance,
    )


@pytest.mark.parametrize("device", ACCELERATORS)
def test_checkpoint_moves_between_cpu_and_device(device):
    torch.manual_seed(0)
    cpu_model = nn.Linear(4, 3)
    optimizer = minioptim.Adam(cpu_model.parameters(), lr=0.01)
    cpu_model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    buffer.seek(0)
    device_model = nn.Linear(4, 3).to(device)
    device_model.load_state_dict(cpu_model.state_dict())
    device_optimizer = minioptim.Adam(device_model.parameters(), lr=0.01)
    device_optimizer.load_state_dict(torch.load(buffer, weights_only=True))
    for p in device_model.parameters():
        assert device_optimizer.state[p]["exp_avg"].device.type == device
    torch.testing.assert_close(
        device_optimizer.state[device_model.weight]["exp_avg"].cpu(),
        optimizer.state[cpu_model.weight]["exp_avg"],
    )


@pytest.mark.parametrize("device", ACCELERATORS[:1])
def test_grad_scaler_on_cuda_skips_inf_steps(device):
    torch.manual_seed(0)
    model = nn.Linear(4, 1).to(device)
    optimizer = minioptim.AdamW(model.parameters(), lr=0.01)
    scaler = torch.amp.GradScaler(device)
    before = model.weight.detach().clone()
    optimizer.zero_grad()
    with torch.autocast(device, dtype=torch.float16):
        loss = model(torch.randn(8, 4, device=device)).float().sum() * float("inf")
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert torch.equal(model.weight.detach(), before)
    assert model.weight not in optimizer.state
