"""``capturable=True``: a captured ``step()`` replays exactly what eager steps compute.

On the CPU, capture is played by ``captured.Graph`` (a recorder of ATen operators, which
replays them the way a CUDA graph replays kernels); on a CUDA device the same cases run
under ``torch.cuda.graph`` (bottom of the file, skipped here). Every case has two twin
optimizers from the same start and the same gradients: one steps eagerly, the other's
step is captured once after a warm-up and replayed. They must agree bit for bit, step
counts included, or the capture must raise an error that says what to change.

Which paths capture (checked below): with a float lr, every built-in's default path and
its compiled rule; with a tensor lr (a schedule), the compiled rule (``impl="auto"`` on
CUDA), whose kernels read the lr on the device. A rule that reads a device value on the
host (SGD with dampening branches on ``step == 1``; a tensor lr given to torch's fused
kernels as ``alpha``; Adafactor's ``min(lr, step ** -0.5)``) or whose ``prepare`` returns
Python numbers (ScheduleFreeAdamW) raises instead.
"""

import copy
import importlib

import pytest
import torch
from cases import CASES
from conftest import TOLERANCES

import minioptim
from minioptim.capture import Graph

STEPS = 6  # replays, each against an eager step


class RMSprop(minioptim.FusedOptimizer):
    """A student's rule, as lecture 6 writes it, forwarding the base class's options."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, **options):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps), **options)

    def state_names(self, group):
        return ("square_avg",)

    def update(self, group, param, grad, state, step):
        v = state["square_avg"]
        v.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
        param.addcdiv_(grad, v.sqrt().add_(group["eps"]), value=-group["lr"])


def twins(make, tensors):
    """Two optimizers over equal copies of ``tensors``, each with gradient slots."""
    pairs = []
    for _ in range(2):
        params = [t.clone().requires_grad_() for t in tensors]
        for p in params:
            p.grad = torch.zeros_like(p)
        pairs.append((params, make(params)))
    return pairs


def feed(gen, *param_lists):
    """The same fresh gradients into every list, in place (a captured step reads them
    where the capture found them, as backward's accumulation into p.grad leaves them)."""
    for group in zip(*param_lists, strict=True):
        g = torch.randn(group[0].shape, generator=gen, dtype=group[0].dtype)
        for p in group:
            p.grad.copy_(g)


def replay_against_eager(make, tensors, lr=None, warmup=3):
    """Warm up both twins, capture one's step, then replay it beside eager steps of the
    other (with ``lr``, a tensor, decayed before each step of both); return both."""
    (eager_params, eager), (graph_params, graphed) = twins(make, tensors)
    lrs = [o.param_groups[0]["lr"] for o in (eager, graphed)]
    gen = torch.Generator().manual_seed(1)
    for _ in range(warmup):
        feed(gen, eager_params, graph_params)
        eager.step()
        graphed.step()
    graph = Graph()
    feed(gen, eager_params, graph_params)
    with graph.capturing():
        graphed.step()
    eager.step()
    for _ in range(STEPS):
        feed(gen, eager_params, graph_params)
        if lr is not None:
            for value in lrs:
                value.mul_(0.8)
        eager.step()
        graph.replay()
    return (eager_params, eager), (graph_params, graphed)


def assert_identical(first, second):
    (params_a, a), (params_b, b) = first, second
    for p, q in zip(params_a, params_b, strict=True):
        assert torch.equal(p, q)
    state_a, state_b = a.state_dict()["state"], b.state_dict()["state"]
    assert state_a.keys() == state_b.keys()
    for index, entry in state_a.items():
        assert entry.keys() == state_b[index].keys()
        for key, value in entry.items():
            assert torch.equal(value, state_b[index][key]), (index, key)


def lr_of(case, tensor):
    lr = case.options["lr"]
    return torch.tensor(lr, dtype=torch.float64) if tensor else lr


# SGD with dampening starts its momentum with a copy on the first step: a branch on step.
BRANCHES_ON_STEP = {"sgd-dampening"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_captured_step_replays_eager_steps_with_a_float_lr(case):
    def make(params):
        return case.ours(params, capturable=True)

    if case.id in BRANCHES_ON_STEP:
        with pytest.raises(RuntimeError, match="read a value from the device on the host"):
            replay_against_eager(make, case.tensors(torch.float32))
        return
    assert_identical(*replay_against_eager(make, case.tensors(torch.float32)))


# The compiled rules (impl="auto" on CUDA); Muon takes a layout, so it is never compiled.
COMPILED = [c for c in CASES if c.id in ("sgd-nesterov-wd", "adam-amsgrad-wd", "adamw",
                                          "signum-wd", "lion-maximize")]  # fmt: skip


@pytest.mark.parametrize("case", COMPILED, ids=lambda c: c.id)
def test_a_captured_compiled_step_follows_a_tensor_lr_schedule(case):
    def make(params):
        return case.ours(params, "compiled", capturable=True, lr=lr_of(case, tensor=True))

    assert_identical(*replay_against_eager(make, case.tensors(torch.float32), lr=True))


@pytest.mark.parametrize("case", [c for c in CASES if c.id not in BRANCHES_ON_STEP],
                         ids=lambda c: c.id)  # fmt: skip
def test_a_tensor_lr_on_an_eager_path_raises_saying_what_to_change(case):
    """torch's fused kernels and ``alpha=`` take Python numbers: a tensor lr is read on
    the host, which a capture forbids. The message names the way out (impl='compiled')."""

    def make(params):
        return case.ours(params, capturable=True, lr=lr_of(case, tensor=True))

    with pytest.raises(RuntimeError, match="impl='compiled'"):
        replay_against_eager(make, case.tensors(torch.float32), lr=True)


def test_a_students_rule_captures_compiled_with_a_scheduled_lr():
    def make(params):
        return RMSprop(params, lr=torch.tensor(0.01, dtype=torch.float64), impl="compiled",
                       capturable=True)  # fmt: skip

    assert_identical(*replay_against_eager(make, CASES[0].tensors(torch.float32), lr=True))


def test_host_side_rules_raise_instead_of_replaying_the_captured_values():
    tensors = [torch.randn(4, 3), torch.randn(5)]
    with pytest.raises(RuntimeError, match="Adafactor.update.. read a value from the device"):
        replay_against_eager(lambda ps: minioptim.Adafactor(ps, capturable=True), tensors)
    with pytest.raises(RuntimeError, match=r"prepare\(\) returned Python numbers"):
        replay_against_eager(lambda ps: minioptim.ScheduleFreeAdamW(ps, capturable=True), tensors)


def test_capturing_the_first_step_raises_asking_for_a_warm_up():
    with pytest.raises(RuntimeError, match="warm-up"):
        replay_against_eager(lambda ps: minioptim.Adam(ps, capturable=True), [torch.randn(3)],
                             warmup=0)  # fmt: skip


def test_capture_without_capturable_raises_naming_it():
    with pytest.raises(RuntimeError, match="capturable=True"):
        replay_against_eager(lambda ps: minioptim.Adam(ps), [torch.randn(3)])


def test_the_stand_in_replays_the_wrong_steps_that_the_refusal_prevents():
    """Without capturable=True, and with the refusal bypassed, replays repeat the captured
    step's bias corrections (the error that issue 17 measured on an H200): the stand-in for
    CUDA graphs shows it, so it can tell a right capture from a wrong one."""
    (eager_params, eager), (graph_params, graphed) = twins(
        lambda ps: minioptim.Adam(ps, lr=0.01), [torch.randn(6)]
    )
    gen = torch.Generator().manual_seed(0)
    feed(gen, eager_params, graph_params)
    eager.step()
    graphed.step()
    graph = Graph(host=[graphed.buckets[0][0].steps])  # the counts of a CPU tensor
    with graph.capturing(announced=False):
        graphed.step()
    eager.step()
    for _ in range(STEPS):
        eager.step()
        graph.replay()
    assert (eager_params[0] - graph_params[0]).abs().max() > 1e-3


def test_parameters_outside_the_captured_step_keep_their_own_counts():
    """A parameter without a gradient while the step is captured (frozen, say) is left out
    of the graph. The host cannot read how many replays ran: had it counted on its own,
    the second parameter, stepped alone 3 times, would look level with the first (2 warm-up
    steps and the capture) and share its updates, with the first's bias corrections. Runs
    follow labels instead (FlatBuffer.keep_steps_on_device), and each keeps its count."""

    def make(params):
        return minioptim.Adam(params, lr=0.01, capturable=True)

    (eager_params, eager), (graph_params, graphed) = twins(make, [torch.randn(5), torch.randn(5)])
    gen = torch.Generator().manual_seed(2)
    for params in (eager_params, graph_params):
        params[1].grad = None  # the second parameter is frozen at first
    for _ in range(2):
        feed(gen, eager_params[:1], graph_params[:1])
        eager.step()
        graphed.step()
    graph = Graph()
    feed(gen, eager_params[:1], graph_params[:1])
    with graph.capturing():
        graphed.step()
    eager.step()
    for _ in range(STEPS):
        feed(gen, eager_params[:1], graph_params[:1])
        eager.step()
        graph.replay()
    for params in (eager_params, graph_params):
        params[0].grad, params[1].grad = None, torch.zeros_like(params[1])
    for _ in range(3):  # the second alone
        feed(gen, eager_params[1:], graph_params[1:])
        eager.step()
        graphed.step()
    for params in (eager_params, graph_params):
        params[0].grad = torch.zeros_like(params[0])
    for _ in range(4):  # both
        feed(gen, eager_params, graph_params)
        eager.step()
        graphed.step()
    assert_identical((eager_params, eager), (graph_params, graphed))
    steps = [graphed.state[p]["step"].item() for p in graph_params]
    assert steps == [3 + STEPS + 4, 3 + 4]


@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_capturable_steps_compute_what_torch_optim_computes(case, impl, monkeypatch):
    """capturable=True moves the counts to the device, as float32 tensors like torch.optim's;
    a rule sees its step as such a tensor. Where the count enters no arithmetic the numbers
    are bit for bit those of capturable=False. Adam's reference path computes its bias
    corrections from the float32 count, as torch.optim's capturable for-loop does (which
    is 7e-5 relative away from its usual one after 20 steps, measured): it is checked
    against that, run on the CPU (torch.optim refuses capturable=True there only by a
    device check, patched out). The fast path's fused kernel reads the count as a number:
    it follows the usual reference."""
    adam_module = importlib.import_module("torch.optim.adam")  # torch.optim hides the name
    monkeypatch.setattr(
        adam_module, "_get_capturable_supported_devices", lambda supports_xla=True: ["cpu"]
    )
    adam = case.name in ("Adam", "AdamW")
    tensors = case.tensors(torch.float32)
    ours = [t.clone().requires_grad_() for t in tensors]
    usual = [t.clone().requires_grad_() for t in tensors]
    optimizer = case.ours(ours, impl, capturable=True)
    if adam and impl == "reference":
        reference = case.theirs(usual, capturable=True)
    else:
        reference = case.ours(usual, impl)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        for p, q in zip(ours, usual, strict=True):
            p.grad = torch.randn(p.shape, generator=gen)
            q.grad = p.grad.clone()
        optimizer.step()
        reference.step()
    tolerance = TOLERANCES["fast", torch.float32] if adam else dict(rtol=0, atol=0)
    for p, q in zip(ours, usual, strict=True):
        torch.testing.assert_close(p, q, **tolerance)
    assert optimizer.buckets[0][0].steps.dtype == torch.float32


def test_a_count_written_in_place_is_read_again():
    """Zeroing one parameter's count restarts its bias corrections (tests/test_state_edits.py).
    With capturable=True the host holds labels, not counts; the write bumps the counters'
    version, so the next step reads them again: the same steps as without capturable."""
    tensors = [torch.randn(4, 3), torch.randn(5)]
    runs = []
    for capturable in (False, True):
        params = [t.clone().requires_grad_() for t in tensors]
        optimizer = minioptim.Adam(params, lr=0.01, capturable=capturable)
        gen = torch.Generator().manual_seed(5)
        for step in range(8):
            if step == 4:
                optimizer.state[params[0]]["step"].zero_()
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen)
            optimizer.step()
        runs.append((params, [optimizer.state[p]["step"].item() for p in params]))
    (usual, usual_steps), (capturable, capturable_steps) = runs
    assert usual_steps == capturable_steps == [4.0, 8.0]
    for p, q in zip(usual, capturable, strict=True):
        assert torch.equal(p, q)


def test_capturable_checkpoints_round_trip_and_load_into_torch():
    """The counts are tensors on the parameters' device in state_dict(), as torch.optim's
    with capturable=True; resumed runs equal uninterrupted ones, both ways."""
    tensors = [torch.randn(4, 3), torch.randn(5)]
    whole = [t.clone().requires_grad_() for t in tensors]
    first = [t.clone().requires_grad_() for t in tensors]
    ours = minioptim.Adam(whole, lr=0.01, capturable=True)
    half = minioptim.Adam(first, lr=0.01, capturable=True)
    gen = torch.Generator().manual_seed(4)
    grads = [[torch.randn(t.shape, generator=gen) for t in tensors] for _ in range(10)]
    for step in range(10):
        for p, g in zip(whole, grads[step], strict=True):
            p.grad = g.clone()
        ours.step()
    for step in range(5):
        for p, g in zip(first, grads[step], strict=True):
            p.grad = g.clone()
        half.step()
    saved = copy.deepcopy(half.state_dict())
    assert saved["state"][0]["step"].item() == 5.0
    resumed = [p.detach().clone().requires_grad_() for p in first]
    again = minioptim.Adam(resumed, lr=0.01, capturable=True)
    again.load_state_dict(saved)
    theirs_params = [p.detach().clone().requires_grad_() for p in first]
    theirs = torch.optim.Adam(theirs_params, lr=0.01, foreach=False)
    # torch.optim takes capturable from the checkpoint's groups, and refuses it on a CPU
    on_cpu = {**saved, "param_groups": [{**g, "capturable": False} for g in saved["param_groups"]]}
    theirs.load_state_dict(on_cpu)
    for step in range(5, 10):
        for p, q, g in zip(resumed, theirs_params, grads[step], strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        again.step()
        theirs.step()
    for p, q, r in zip(whole, resumed, theirs_params, strict=True):
        assert torch.equal(p, q)
        torch.testing.assert_close(r, q, rtol=1e-6, atol=1e-7)
    assert [again.state[p]["step"].item() for p in resumed] == [10.0, 10.0]


# -- on a CUDA device: torch.cuda.graph itself --------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def chain(error):
    """An exception and those it was raised from or while handling. A host read inside
    ``torch.cuda.graph`` invalidates the capture, so leaving the ``with`` block raises
    again, from capture_end; minioptim's message is then earlier in the chain."""
    while error is not None:
        yield error
        error = error.__cause__ or error.__context__


def cuda_replay_against_eager(make, tensors, lr=False):
    """As replay_against_eager, with torch.cuda.graph: warm-up on a side stream, capture,
    then replays beside eager steps of the twin."""
    (eager_params, eager), (graph_params, graphed) = twins(make, [t.cuda() for t in tensors])
    lrs = [o.param_groups[0]["lr"] for o in (eager, graphed)]
    gen = torch.Generator(device="cuda").manual_seed(1)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            feed(gen, eager_params, graph_params)
            eager.step()
            graphed.step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    feed(gen, eager_params, graph_params)
    with torch.cuda.graph(graph):
        graphed.step()
    graph.replay()  # capture does not run the kernels
    eager.step()
    for _ in range(STEPS):
        feed(gen, eager_params, graph_params)
        if lr:
            for value in lrs:
                value.mul_(0.8)
        eager.step()
        graph.replay()
    torch.cuda.synchronize()
    return (eager_params, eager), (graph_params, graphed)


@cuda
@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "tensor-lr"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cuda_graph_replays_equal_eager_steps(case, tensor_lr):
    """impl='auto' compiles the elementwise rules on CUDA: every case with a float lr,
    and with a tensor lr every compiled one, replays bit for bit; the others raise."""

    def make(params):
        lr = lr_of(case, tensor_lr)
        return case.ours(params, capturable=True, lr=lr.cuda() if tensor_lr else lr)

    raises = case.id in BRANCHES_ON_STEP or (tensor_lr and case.name == "Muon")
    if raises:
        with pytest.raises(RuntimeError) as raised:
            cuda_replay_against_eager(make, case.tensors(torch.float32), lr=tensor_lr)
        messages = [str(error) for error in chain(raised.value)]
        assert any("read a value from the device on the host" in m for m in messages)
        return
    assert_identical(*cuda_replay_against_eager(make, case.tensors(torch.float32), tensor_lr))


@cuda
def test_cuda_graph_of_a_whole_training_step_equals_eager_training():
    """Forward, backward and step in one graph (the way to make many small tensors
    host-free): a replayed iteration equals an eager one."""
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))]
    models.append(copy.deepcopy(models[0]))
    models = [m.cuda() for m in models]
    optimizers = [minioptim.AdamW(m.parameters(), lr=1e-2, capturable=True) for m in models]
    x, y = torch.randn(32, 8, device="cuda"), torch.randn(32, 1, device="cuda")

    def train(model, optimizer):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            for model, optimizer in zip(models, optimizers, strict=True):
                train(model, optimizer)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        train(models[1], optimizers[1])
    for _ in range(STEPS):
        train(models[0], optimizers[0])
        graph.replay()
    torch.cuda.synchronize()
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
