"""minioptim inside the tools people save and train with: safetensors, accelerate,
``torch.save``, Hugging Face ``save_pretrained``, freezing mid-training, ``torch.compile``
and frameworks that set gradients to ``None`` every step (issue 8).

Every run that trains is compared with the same run under ``torch.optim`` (``foreach=False``).
Tolerances, float32: the reference path is bit-identical (``EXACT``); the default fast path
runs torch's fused kernels in another order and agrees to float rounding (``CLOSE``).
Lightning and the Hugging Face Trainer are in ``test_clients_trainers.py``.
"""

import logging
import os

import pytest
import torch
from conftest import build
from torch import nn

import minioptim

EXACT = dict(rtol=0, atol=0)
CLOSE = dict(rtol=1e-5, atol=1e-6)
TOLERANCE = {"reference": EXACT, "auto": CLOSE}
ADAMW = dict(lr=0.05, weight_decay=0.1)


# Tiny models run fastest on one thread, and do not slow down on a busy CI machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def model(seed: int = 0) -> nn.Sequential:
    """Same-shaped parameters (LayerNorm weight and bias, the first bias) share buffer runs."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3))


def batch(step: int) -> torch.Tensor:
    return torch.randn(6, 4, generator=torch.Generator().manual_seed(step))


def optimizer_for(library, params, impl: str = "auto", name: str = "AdamW", **options):
    options = {**ADAMW, **options} if name == "AdamW" else options
    if library is minioptim:
        options["impl"] = impl
    return build(library, name, params, **options)


def train(net, optimizer, steps: int, start: int = 0, zero_grad=None) -> None:
    for step in range(start, start + steps):
        (zero_grad or optimizer.zero_grad)()
        net(batch(step)).square().mean().backward()
        optimizer.step()


def trained(library, steps: int = 4, impl: str = "auto") -> nn.Sequential:
    net = model()
    train(net, optimizer_for(library, net.parameters(), impl), steps)
    return net


def assert_same_tensors(ours: dict, theirs: dict, **tolerance) -> None:
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], **(tolerance or EXACT), msg=key)


def assert_same_models(ours: nn.Module, theirs: nn.Module, **tolerance) -> None:
    assert_same_tensors(dict(ours.state_dict()), dict(theirs.state_dict()), **tolerance)


def buffer_holds(net: nn.Module, optimizer) -> bool:
    """Whether the optimizer's flat buffer holds the model's current values."""
    (bucket,) = optimizer.buckets[0]
    flat = torch.cat([p.detach().reshape(-1) for p in bucket.params])
    return torch.equal(flat, bucket.param)


# -- 1. serializers: every parameter saved, on its own ------------------------------------


def test_parameters_have_storages_of_their_own():
    """What serializers look at: distinct storages, each exactly the parameter's size."""
    net = model()
    optimizer_for(minioptim, net.parameters()).zero_grad()
    storages = [p.untyped_storage() for p in net.parameters()]
    assert len({s.data_ptr() for s in storages}) == len(storages)
    for p, storage in zip(net.parameters(), storages, strict=True):
        assert storage.nbytes() == p.numel() * p.element_size()
        assert storage.data_ptr() == p.data_ptr()
        assert p.grad.untyped_storage().nbytes() == p.numel() * p.element_size()


def test_safetensors_save_model_and_load_model_round_trip(tmp_path):
    from safetensors.torch import load_file, load_model, save_model

    net = trained(minioptim)
    torch.testing.assert_close(net.state_dict(), trained(torch.optim).state_dict(), **CLOSE)
    path = tmp_path / "model.safetensors"
    save_model(net, str(path))  # raised "None is covering the entire storage" before
    assert_same_tensors(load_file(str(path)), dict(net.state_dict()))

    fresh = model(seed=1)
    optimizer = optimizer_for(minioptim, fresh.parameters())
    missing, unexpected = load_model(fresh, str(path))
    assert not missing and not unexpected
    assert_same_models(fresh, net)
    assert buffer_holds(fresh, optimizer)  # loaded into the buffer, not beside it
    train(fresh, optimizer, 2, start=4)
    train(net, optimizer_for(minioptim, net.parameters()), 2, start=4)
    assert_same_models(fresh, net)


def test_safetensors_save_file_of_the_state_dict(tmp_path):
    from safetensors.torch import load_file, save_file

    net = trained(minioptim)
    path = tmp_path / "state.safetensors"
    save_file(net.state_dict(), str(path))
    assert_same_tensors(load_file(str(path)), dict(net.state_dict()))


class Tied(nn.Module):
    """An output layer that shares the embedding's weight: one parameter, two names."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embedding.weight

    def forward(self, tokens):
        return self.out(torch.tanh(self.embedding(tokens)))


def test_safetensors_keeps_true_ties_as_torch_optim_does(tmp_path):
    from safetensors.torch import load_file, load_model, save_model

    saved = {}
    for library in (minioptim, torch.optim):
        net = Tied()
        optimizer = optimizer_for(library, net.parameters())
        for step in range(3):
            optimizer.zero_grad()
            net(torch.arange(10).roll(step)).square().mean().backward()
            optimizer.step()
        path = tmp_path / f"{library.__name__}.safetensors"
        save_model(net, str(path))
        saved[library] = load_file(str(path))
        fresh = Tied()
        load_model(fresh, str(path))
        assert fresh.out.weight is fresh.embedding.weight
        assert torch.equal(fresh.embedding.weight, net.embedding.weight)
    assert list(saved[minioptim]) == list(saved[torch.optim]) == ["embedding.weight"]
    assert_same_tensors(saved[minioptim], saved[torch.optim], **CLOSE)


def test_torch_save_of_a_submodule_writes_only_its_tensors(tmp_path):
    sizes, heads = {}, {}
    for library in (minioptim, torch.optim):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 1))
        train_big = optimizer_for(library, net.parameters())
        for step in range(2):
            train_big.zero_grad()
            net(torch.randn(8, 64, generator=torch.Generator().manual_seed(step))).sum().backward()
            train_big.step()
        path = tmp_path / f"head-{library.__name__}.pt"
        torch.save(net[2].state_dict(), path)  # 513 numbers, beside a 33,280-number body
        sizes[library] = os.path.getsize(path)
        heads[library] = torch.load(path, weights_only=True)
    assert abs(sizes[minioptim] - sizes[torch.optim]) <= 200, sizes  # 266,921 vs 3,877 before
    assert sizes[minioptim] < 513 * 4 + 2000
    assert_same_tensors(heads[minioptim], heads[torch.optim], **CLOSE)
    fresh = nn.Linear(512, 1)
    fresh.load_state_dict(heads[minioptim])
    assert torch.equal(fresh.weight, heads[minioptim]["weight"])


def test_accelerate_save_state_and_load_state_resume_exactly(tmp_path, caplog):
    from accelerate import Accelerator
    from safetensors.torch import load_file

    def run(library, steps, start=0, load=None, save=None):
        net = model()
        optimizer = optimizer_for(library, net.parameters())
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        accelerator = Accelerator(cpu=True)
        net, optimizer, schedule = accelerator.prepare(net, optimizer, schedule)
        if load:
            accelerator.load_state(str(load))
        for step in range(start, start + steps):
            optimizer.zero_grad()  # accelerate's default: set_to_none=True
            accelerator.backward(net(batch(step)).square().mean())
            optimizer.step()
            schedule.step()
        if save:
            accelerator.save_state(str(save))  # safetensors, the default
            accelerator.save_model(net, str(save / "exported"))
        return net

    uninterrupted = run(minioptim, 6)
    with caplog.at_level(logging.WARNING):
        first_half = run(minioptim, 3, save=tmp_path / "checkpoint")
    assert "Removed shared tensor" not in caplog.text
    keys = sorted(first_half.state_dict())
    assert sorted(load_file(str(tmp_path / "checkpoint" / "model.safetensors"))) == keys
    exported = load_file(str(tmp_path / "checkpoint" / "exported" / "model.safetensors"))
    assert_same_tensors(exported, dict(first_half.state_dict()))

    resumed = run(minioptim, 3, start=3, load=tmp_path / "checkpoint")
    assert_same_models(resumed, uninterrupted)  # bit-identical
    assert_same_models(uninterrupted, run(torch.optim, 6), **CLOSE)


@pytest.mark.parametrize("head", ["SequenceClassification", "MaskedLM"])
def test_hugging_face_save_pretrained_and_from_pretrained(tmp_path, head):
    import transformers

    config = transformers.BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        vocab_size=99,
        num_labels=3,
    )
    cls = getattr(transformers, f"BertFor{head}")
    gen = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 99, (4, 10), generator=gen)
    labels = torch.randint(0, 3, (4,), generator=gen) if head != "MaskedLM" else input_ids
    saved = {}
    for library in (minioptim, torch.optim):
        torch.manual_seed(0)
        net = cls(config)
        net.eval()  # no dropout: the two libraries see the same gradients
        optimizer = optimizer_for(library, net.parameters(), lr=1e-3)
        for _ in range(3):
            optimizer.zero_grad()
            net(input_ids=input_ids, labels=labels).loss.backward()
            optimizer.step()
        directory = tmp_path / library.__name__
        net.save_pretrained(directory)
        loaded = cls.from_pretrained(directory)
        assert_same_models(loaded, net)
        if head == "MaskedLM":  # the tie survives, in the trained and the loaded model
            for m in (net, loaded):
                assert m.cls.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight
        saved[library] = net.state_dict()
    assert_same_tensors(dict(saved[minioptim]), dict(saved[torch.optim]), **CLOSE)


# -- 2. freezing mid-training ----------------------------------------------------------------

FREEZE, UNFREEZE, STEPS = 3, 7, 10

# Clipping right after the layer froze (``after_zero_grad``): minioptim's zero_grad() left
# zeros in the frozen layer's p.grad, torch's left None, so clip_grad_norm_ takes the total
# norm over a list with two extra zeros. Mathematically the same norm, but the vectorised
# reduction groups its terms by the CPU's vector width, so the two totals can differ in
# the last place (85 of 1,000 random cases on an Intel AVX-512 CPU), and with them the
# clip coefficient of every gradient. One unit moves these parameters by at
# most 6e-8 over the 10 steps (measured by nudging the norm); the bound leaves 16x.
CLIP_AFTER_FREEZE = dict(rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize(
    "name, options",
    [("AdamW", {}), ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.1))],
    ids=["AdamW", "SGD"],
)
@pytest.mark.parametrize("when", ["before_zero_grad", "after_zero_grad"])
@pytest.mark.parametrize("clip", [False, True], ids=["no_clip", "clip"])
def test_layer_frozen_mid_training_stays_put_and_rejoins(impl, name, options, when, clip):
    """``clip``: clip_grad_norm_ over all parameters (Lightning, HF Trainer) between backward
    and step, which writes in place to every gradient that is not None."""
    trajectories = []
    for library in (minioptim, torch.optim):
        net = model()
        optimizer = optimizer_for(library, net.parameters(), impl, name, **options)
        frozen = net[0]
        trajectory = []
        for step in range(STEPS):
            if when == "before_zero_grad" and step in (FREEZE, UNFREEZE):
                frozen.requires_grad_(step == UNFREEZE)
            optimizer.zero_grad()  # the default of each library
            if when == "after_zero_grad" and step in (FREEZE, UNFREEZE):
                frozen.requires_grad_(step == UNFREEZE)
            net(batch(step)).square().mean().backward()
            if clip:
                nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.1)
            optimizer.step()
            if FREEZE <= step < UNFREEZE:
                assert all(p.grad is None for p in frozen.parameters())
            trajectory.append([p.detach().clone() for p in net.parameters()])
        trajectories.append(trajectory)
        # not moved at all while frozen (torch.optim: 0 change), moving again afterwards
        for i in range(len(list(frozen.parameters()))):
            while_frozen = [trajectory[step][i] for step in range(FREEZE - 1, UNFREEZE)]
            assert all(torch.equal(t, while_frozen[0]) for t in while_frozen)
            assert not torch.equal(trajectory[UNFREEZE][i], while_frozen[0])
        for i in range(2, len(trajectory[0])):  # the rest kept training
            assert not torch.equal(trajectory[UNFREEZE - 1][i], trajectory[FREEZE - 1][i])
    ours, theirs = trajectories
    tolerance = TOLERANCE[impl]  # bit-identical on the reference path, where the
    if clip and when == "after_zero_grad" and impl == "reference":  # norms agree
        tolerance = CLIP_AFTER_FREEZE
    for step, (mine, torchs) in enumerate(zip(ours, theirs, strict=True)):
        torch.testing.assert_close(mine, torchs, **tolerance, msg=f"step {step}")


@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_layer_frozen_between_backward_and_step_takes_that_step_as_torch(impl):
    """torch.optim updates every parameter whose p.grad is set, frozen or not: a layer frozen
    after backward still gets that step's gradient, and is skipped from the next
    ``zero_grad`` on. Its gradient is not discarded by ``step``."""
    runs = []
    for library in (minioptim, torch.optim):
        net = model()
        optimizer = optimizer_for(library, net.parameters(), impl)
        for step in range(6):
            optimizer.zero_grad()
            net(batch(step)).square().mean().backward()
            if step == 3:
                net[0].requires_grad_(False)
                grad = net[0].weight.grad.clone()
            optimizer.step()
            if step == 3:
                assert net[0].weight.grad is not None and torch.equal(net[0].weight.grad, grad)
        runs.append(net)
    assert_same_models(*runs, **TOLERANCE[impl])


@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_layer_frozen_before_the_optimizer_joins_when_unfrozen(impl):
    runs = []
    for library in (minioptim, torch.optim):
        net = model()
        net[0].requires_grad_(False)
        optimizer = optimizer_for(library, net.parameters(), impl)
        assert net[0].weight.grad is None
        for step in range(6):
            if step == 3:
                net[0].requires_grad_(True)
            optimizer.zero_grad()
            net(batch(step)).square().mean().backward()
            optimizer.step()
        runs.append(net)
    assert not torch.equal(runs[0][0].weight, model()[0].weight)
    assert_same_models(*runs, **TOLERANCE[impl])


def test_frozen_layer_survives_a_checkpoint_round_trip():
    """state_dict() while a layer is frozen, loaded into torch.optim, and back."""
    net = model()
    optimizer = optimizer_for(minioptim, net.parameters(), "reference")
    train(net, optimizer, 2)
    net[0].requires_grad_(False)
    train(net, optimizer, 2, start=2)
    saved = optimizer.state_dict()
    twin = model()
    twin.load_state_dict(net.state_dict())
    twin[0].requires_grad_(False)
    theirs = optimizer_for(torch.optim, twin.parameters())
    theirs.load_state_dict(saved)
    for m, opt in ((net, optimizer), (twin, theirs)):
        m[0].requires_grad_(True)
        train(m, opt, 2, start=4)
    assert_same_models(net, twin)


# -- 3. torch.compile ---------------------------------------------------------------------


def compiled_function_calling_step(optimizer):
    @torch.compile(fullgraph=False)
    def step():
        optimizer.step()

    return step


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("spelling", ["compile(optimizer.step)", "compiled function"])
def test_compiled_optimizer_step_matches_torch(impl, spelling):
    """PyTorch's "compiled optimizer" recipes; Dynamo skips minioptim's step (it is
    ``torch.compiler.disable``-d), so the numbers are eager minioptim's."""
    torch._dynamo.reset()
    expected = trained(torch.optim, steps=5)
    net = model()
    optimizer = optimizer_for(minioptim, net.parameters(), impl)
    if spelling == "compile(optimizer.step)":
        step = torch.compile(optimizer.step)
    else:
        step = compiled_function_calling_step(optimizer)
    for i in range(5):
        optimizer.zero_grad()
        net(batch(i)).square().mean().backward()
        step()
    assert_same_models(net, expected, **TOLERANCE[impl])


def test_compiled_model_with_gradients_set_to_none():
    """torch.compile(model), gradients from the compiled backward set to None every step, and
    the step compiled too.

    Dynamo and AOTAutograd (``backend="aot_eager"``) make the forward and backward graphs
    that hand the optimizer its gradients; inductor's kernels would only add a C++ build
    (30 s on CI's CPU), and ``test_integration.py`` compiles a model with inductor already.
    """
    torch._dynamo.reset()
    expected = trained(torch.optim, steps=4)
    net = model()
    optimizer = optimizer_for(minioptim, net.parameters(), "reference")
    compiled = torch.compile(net, backend="aot_eager")
    step = torch.compile(optimizer.step, backend="aot_eager")
    for i in range(4):
        net.zero_grad()
        compiled(batch(i)).square().mean().backward()
        step()
    assert_same_models(net, expected)


# -- 4. frameworks that set gradients to None -----------------------------------------------


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("reset", ["model.zero_grad", "zero_grad(set_to_none=True)"])
def test_gradients_set_to_none_every_step_train_as_torch(impl, reset):
    """HF Trainer / accelerate style; a second head that gets no gradient on odd steps is
    skipped on those steps, state and all, in both libraries."""
    runs = []
    for library in (minioptim, torch.optim):
        torch.manual_seed(0)
        body, head_a, head_b = nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(8, 2)
        net = nn.ModuleList([body, head_a, head_b])
        optimizer = optimizer_for(library, net.parameters(), impl)
        for step in range(8):
            if reset == "model.zero_grad":
                net.zero_grad()
            else:
                optimizer.zero_grad(set_to_none=True)
            hidden = torch.tanh(body(batch(step)))
            out = head_a(hidden) + (head_b(hidden) if step % 2 == 0 else 0)
            out.square().mean().backward()
            optimizer.step()
        runs.append(net)
    assert_same_models(*runs, **TOLERANCE[impl])


def test_measure_set_to_none_script_runs():
    """scripts/measure_set_to_none.py (numbers in the README) keeps working."""
    from scripts.measure_set_to_none import copy_alone, measure

    timings = measure(count=3, size=4, repeats=1, warmup=0)
    assert set(timings) == {"default", "set-to-none", "torch fused"}
    assert all(t["total"] > 0 for t in timings.values())
    assert copy_alone(3, 4, repeats=1) > 0
