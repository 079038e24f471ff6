r"""Precision modes: half-precision parameters that keep learning.

A float16 or bfloat16 weight :math:`p` stores :math:`t` significant bits (bfloat16: 8,
float16: 11). Rounding to nearest after an update :math:`p + \Delta` gives back :math:`p`
whenever

.. math::

    |\Delta| < \tfrac12 \operatorname{ulp}(p), \qquad
    \operatorname{ulp}(p) = 2^{\lfloor \log_2 |p| \rfloor - t + 1},

so a bfloat16 weight near 1.0 ignores every change below :math:`2^{-8} \approx 0.0039`.
Adam's step is about :math:`\eta`, so with :math:`\eta = 10^{-3}` no such weight ever moves.
Every optimizer (``FusedOptimizer`` and each built-in) takes ``precision=``; the rule's
code does not change. For a bucket of float16/bfloat16 parameters:

``"plain"`` (default)
    Today's behaviour: the rule runs on the half-precision buffers.
``"master"``
    The bucket keeps a float32 copy :math:`w` of its parameters (state ``"master_weight"``)
    and float32 state. The rule runs on :math:`w` with the gradient in float32, and the
    parameters receive :math:`p \leftarrow \operatorname{rn}(w)`, rounded to nearest.
    The iterates :math:`w` are exactly those of the same optimizer run in float32 on the
    same gradients (Micikevicius et al., 2018). Cost: 4 bytes per parameter, plus float32
    instead of half-precision state.
``"stochastic"``
    The rule runs on a float32 working copy :math:`w = p`; the result is rounded to the
    parameter's dtype *stochastically* (:func:`stochastic_round`): up with probability
    equal to the distance from the value below, in units of the gap,

    .. math::

        \operatorname{sr}(w) = \begin{cases} \lceil w \rceil & \text{with probability } r,
        \\ \lfloor w \rfloor & \text{otherwise,} \end{cases}

    .. math::

        r = \frac{w - \lfloor w \rfloor}{\lceil w \rceil - \lfloor w \rfloor}, \qquad
        \mathbb{E}[\operatorname{sr}(w)] = w,

    where :math:`\lfloor w \rfloor, \lceil w \rceil` are the neighbouring values of the
    dtype. An update smaller than the gap moves the weight by a whole gap with the
    matching probability, so on average it is applied (Gupta et al., 2015; Zamirai et al.,
    2020). No extra memory; the random bits are a hash of (``seed``, bucket, element,
    step), so a run is reproducible from its seed, a resumed run draws what the
    uninterrupted one would, and every device draws the same bits.
``"kahan"``
    The bucket keeps a half-precision compensation :math:`c` (state
    ``"kahan_compensation"``) holding what rounding took off the weights (Kahan, 1965).
    In float32, exactly,

    .. math::

        w = p + c, \quad w \leftarrow \text{rule}(w), \quad
        p \leftarrow \operatorname{rn}(w), \quad c \leftarrow \operatorname{rn}(w - p),

    so :math:`p + c` carries about twice the parameter's significant bits: each step loses
    at most :math:`u\,|c| \le u \cdot \tfrac12 \operatorname{ulp}(p)` (:math:`u = 2^{-t}`,
    the unit roundoff) instead of up to :math:`\tfrac12 \operatorname{ulp}(p)`. Cost: 2
    bytes per parameter.

float32 and float64 buckets ignore the mode: they are the precision the others emulate.
In the three modes the rule sees float32 tensors, so half-precision buckets take the
fast path (``impl="fast"``) where float32 ones do. Rule state is kept in float32 in
``"master"`` mode, in the parameter's dtype in the others (rounded to nearest after each
update); :class:`Precision`'s ``state_dtype`` chooses otherwise.

Master weights and compensations are optimizer state: ``optimizer.state[p]`` shows them,
``state_dict()`` saves them and ``load_state_dict()`` restores them exactly (a resumed run
is the uninterrupted one). A checkpoint without them (``torch.optim``'s, or one saved in
another mode) starts them from the parameters: master weights at :math:`w = p`,
compensations at :math:`c = 0`. ``torch.optim`` loads a checkpoint of these modes and
ignores the extra entries. In ``"master"`` mode a parameter written from outside since
the last step (``model.load_state_dict``, ``with torch.no_grad(): p.copy_(...)``, a
replaced ``p.data``) replaces its master weights wherever its value is no longer the
rounded master weight; a write through ``p.data.copy_(...)`` is invisible (autograd does
not count it), as it is to autograd.

References
----------
Kahan, "Further remarks on reducing truncation errors", Communications of the ACM, 1965.
Gupta, Agrawal, Gopalakrishnan and Narayanan, "Deep Learning with Limited Numerical
Precision", ICML 2015.
Micikevicius et al., "Mixed Precision Training", ICLR 2018.
Zamirai, Zhang, Aberger and De Sa, "Revisiting BFloat16 Training", 2020.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .compiled import CompiledRule
from .state import State

MODES = ("plain", "master", "stochastic", "kahan")
HALF = (torch.float16, torch.bfloat16)
MASTER = "master_weight"
COMPENSATION = "kahan_compensation"
NAMES = (MASTER, COMPENSATION)
SAVED = "minioptim_precision"  # state_dict() key: the mode and seed a checkpoint used
STATE_DTYPES = (None, torch.float32, torch.bfloat16, torch.float16)
M32 = 0xFFFFFFFF
# lowbias32's multipliers (Wellons' hash prospector); the second as its int64 residue
# below 2**31 in absolute value, so that no product of a 32-bit value overflows int64.
MULTIPLIERS = (0x7FEB352D, 0x846CA68B - 2**32)
VERSION = operator.attrgetter("_version")


def _from_param(param: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """A master weight's initial value: the parameter itself."""
    return param


def chunk_size(device: torch.device) -> int:
    """Elements per piece of an elementwise rule's run: the float32 working copies of a
    piece stay small (4 MiB each on a CPU, 64 MiB on an accelerator, where fewer and
    larger kernels keep the launch overhead down)."""
    return 2**20 if device.type == "cpu" else 2**24


# -- random bits -------------------------------------------------------------------------------


def mix32(x: Any) -> Any:
    """lowbias32, a 32-bit integer hash, on an int64 tensor of 32-bit values or on an int.

    Every operation is exact in int64 (shifts of non-negative values, products below
    2**63 in absolute value, masks), so CPUs and GPUs, eager and compiled, agree bit for bit.
    """
    x = x ^ (x >> 16)
    x = (x * MULTIPLIERS[0]) & M32
    x = x ^ (x >> 15)
    x = (x * MULTIPLIERS[1]) & M32
    return x ^ (x >> 16)


def keys(seed: int, salt: int, step: int) -> tuple[int, int]:
    """Two 32-bit keys for the random bits of one bucket (``salt``) at one ``step``."""
    h = mix32(mix32(seed & M32) ^ ((seed >> 32) & M32))
    h = mix32(h ^ (salt & M32))
    k1 = mix32(h ^ (step & M32))
    return k1, mix32(k1 ^ 0x9E3779B9)


def random_bits(start: Any, n: int, k1: Any, k2: Any, device: torch.device | str) -> torch.Tensor:
    """32 random bits (an int64 tensor of values in [0, 2**32)) for elements ``start``,
    ..., ``start + n - 1`` under keys ``k1, k2``: two rounds of :func:`mix32`, so
    sequences under other keys are not shifts of each other. ``start``, ``k1`` and ``k2``
    are ints or 0-d int64 tensors (graph inputs when compiled)."""
    index = torch.arange(n, dtype=torch.int64, device=device) + start
    return mix32(mix32((index + k1) & M32) ^ k2)


# -- rounding ------------------------------------------------------------------------------


def stochastic_round(x: torch.Tensor, dtype: torch.dtype, bits: torch.Tensor) -> torch.Tensor:
    r"""``x`` (float32) rounded to ``dtype`` (bfloat16 or float16) stochastically.

    Up (away from zero) with probability equal to the distance from the value below (in
    magnitude), in units of the gap, using the random integers ``bits`` (int64, as from
    :func:`random_bits`; same shape as ``x``). For uniformly random ``bits`` the result is
    *exactly* unbiased for every float32 input of dtype's range, because the probability
    is a count of equally likely bit patterns:

    - **bfloat16** keeps the top 16 bits of a float32. Add a random 16-bit integer
      :math:`r` to the bit pattern and clear the low 16 bits: the result is the value
      above exactly when :math:`\ell + r \ge 2^{16}`, where :math:`\ell` (the low bits)
      is the distance to the value below in units of :math:`2^{-16}` gaps, so with
      probability :math:`\ell / 2^{16}`. A carry into the exponent gives the next binade's
      first value, which is the value above: the bit pattern is linear in the value
      between neighbours, subnormals included. Uses the low 16 bits of ``bits``.
    - **float16** keeps 10 mantissa bits, and has fewer exponent bits: where the float32
      is in float16's normal range the same trick clears 13 bits; in float16's subnormal
      range (:math:`2^{-24} \le |x| < 2^{-14}`, a grid of :math:`2^{-24}`) it clears
      :math:`126 - e` bits (:math:`e`: the biased float32 exponent), at most 23; below
      :math:`2^{-24}` the neighbours are 0 and :math:`2^{-24}` and the result is
      :math:`2^{-24}` with probability :math:`\lfloor |x| 2^{47} \rfloor / 2^{23}`
      (23 random bits): exact for :math:`|x|` a multiple of :math:`2^{-47}`, otherwise
      low by at most :math:`\min(|x|, 2^{-47})`. Uses the low 23 bits of ``bits``.

    Values beyond the largest finite value round to it or to infinity; infinities stay;
    NaNs stay NaN (a NaN whose payload lies in the cleared bits only may become infinite).
    """
    if x.dtype != torch.float32:
        raise TypeError(f"stochastic_round takes float32 values, got {x.dtype}")
    i = x.view(torch.int32).to(torch.int64)
    if dtype == torch.bfloat16:
        rounded = ((i + (bits & 0xFFFF)) & ~0xFFFF).to(torch.int32).view(torch.float32)
        return rounded.to(dtype)  # exact: the low 16 bits are zero
    if dtype != torch.float16:
        raise TypeError(f"stochastic_round rounds to bfloat16 or float16, not {dtype}")
    exponent = (i >> 23) & 0xFF
    dropped = (126 - exponent).clamp(13, 23)  # float32 bits below float16's grid
    mask = torch.pow(2, dropped) - 1
    rounded = ((i + (bits & mask)) & ~mask).to(torch.int32).view(torch.float32)
    # below 2**-24 (biased exponent < 103): 0 or 2**-24, up with probability |x| 2**24
    tiny = exponent < 103
    up = ((bits & 0x7FFFFF) + 1).to(torch.float32) * 2.0**-23 <= x.abs() * 2.0**24
    lowest = torch.where(up, 2.0**-24, 0.0).copysign(x)
    return torch.where(tiny, lowest, rounded).to(dtype)


# -- the switch ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """How the updates of float16/bfloat16 parameters are computed and rounded.

    Pass a mode's name as ``precision="master"`` (or ``"stochastic"``, ``"kahan"``,
    ``"plain"``) to any optimizer, or a ``Precision`` to set more.

    Parameters
    ----------
    mode:
        ``"plain"`` (default), ``"master"``, ``"stochastic"`` or ``"kahan"``: see
        :mod:`minioptim.precision`.
    seed:
        Stochastic rounding's seed (default 0): the same seed, parameters and gradients
        give the same run. A checkpoint keeps it, and loading one takes it over.
    state_dtype:
        The dtype of the rule's state (Adam's moments, a momentum) for half-precision
        parameters: ``None`` (default) keeps it in float32 in ``"master"`` mode and in the
        parameters' dtype otherwise; ``torch.float32`` keeps float32 state in every mode
        (4 bytes per element instead of 2, and no rounding of the state).

    Examples
    --------
    >>> model = torch.nn.Linear(64, 1).bfloat16()
    >>> params = list(model.parameters())
    >>> optimizer = minioptim.AdamW(params, precision="stochastic")
    >>> # or Kahan-compensated updates with float32 state:
    >>> fp32_state = Precision("kahan", state_dtype=torch.float32)
    >>> optimizer = minioptim.AdamW(params, precision=fp32_state)
    """

    mode: str = "plain"
    seed: int = 0
    state_dtype: torch.dtype | None = None
    _specs: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"precision must be one of {MODES} or a Precision, got {self.mode!r}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(f"Precision seed must be an integer in [0, 2**64), got {seed!r}")
        if self.state_dtype not in STATE_DTYPES:
            raise ValueError(
                f"Precision state_dtype must be None, torch.float32, torch.bfloat16 or "
                f"torch.float16, got {self.state_dtype!r}"
            )
        if self.mode == "plain" and self.state_dtype is not None:
            raise ValueError(
                "precision 'plain' keeps the state in the parameters' dtype; state_dtype "
                "applies to 'master', 'stochastic' and 'kahan'"
            )

    @classmethod
    def of(cls, value: str | Precision) -> Precision:
        """A :class:`Precision` from a mode's name, or ``value`` itself."""
        if isinstance(value, Precision):
            return value
        if isinstance(value, str):
            return cls(value)
        raise TypeError(
            f"precision must be a mode's name {MODES} or a minioptim.Precision, got "
            f"{type(value).__name__} {value!r}"
        )

    def applies(self, dtype: torch.dtype) -> bool:
        """Whether buckets of ``dtype`` are updated differently from ``"plain"``."""
        return self.mode != "plain" and dtype in HALF

    def rule_state_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype of the rule's state in a bucket of ``dtype``."""
        if not self.applies(dtype):
            return dtype
        if self.state_dtype is not None:
            return self.state_dtype
        return torch.float32 if self.mode == "master" else dtype

    def specs(self, dtype: torch.dtype) -> tuple[State, ...]:
        """The state this mode adds to a bucket of ``dtype``: master weights that start at
        the parameters, or a compensation that starts at zero."""
        if dtype not in self._specs:
            specs: tuple[State, ...] = ()
            if self.applies(dtype) and self.mode == "master":
                specs = (State(MASTER, init=_from_param),)
            elif self.applies(dtype) and self.mode == "kahan":
                specs = (State(COMPENSATION),)
            self._specs[dtype] = specs
        return self._specs[dtype]

    def check_names(self, specs: tuple[State, ...], owner: str) -> None:
        """Raise if a rule declares a state under a name this module reserves."""
        for spec in specs:
            if spec.name in NAMES:
                raise ValueError(
                    f"{owner}.state_names(): the name {spec.name!r} is reserved for the "
                    "precision modes' state (minioptim.precision); choose another"
                )

    def attach(self, bucket: Any, salt: int) -> None:
        """Set the dtypes of a new bucket's state, and its salt for the random bits."""
        bucket.precision = BucketPrecision(salt)
        if self.applies(bucket.dtype):
            bucket.state_dtype = self.rule_state_dtype(bucket.dtype)
            bucket.state_dtypes = {MASTER: torch.float32, COMPENSATION: bucket.dtype}

    # -- each step -------------------------------------------------------------------------

    def sync(self, bucket: Any) -> None:
        """``"master"``: take in the parameters written from outside since the last step.

        A parameter whose version counter moved (an in-place write, a replaced
        ``p.data``) gets its master weights from its values wherever they differ from the
        rounded master weights: a checkpoint of the model loaded after the optimizer's
        (the same values) keeps the master weights' extra bits.
        """
        if self.mode != "master" or MASTER not in bucket.state or not self.applies(bucket.dtype):
            return
        seen = bucket.precision.versions
        now = list(map(VERSION, bucket.params))
        if now == seen:
            return
        seen = seen or [None] * len(now)  # after a load: check every parameter
        for i, (version, before) in enumerate(zip(now, seen, strict=True)):
            if version != before and bucket.started[i]:
                master = bucket.state_slot(MASTER, i)
                values = bucket.slot(bucket.param, i)
                stale = values != master.to(bucket.dtype)
                master.copy_(torch.where(stale, values.float(), master))
        self.record(bucket)

    def record(self, bucket: Any, loaded: bool = False) -> None:
        """Remember the parameters' version counters after a step or an edit of the
        state; after a load, forget them, so that the next step compares every parameter
        with its rounded master weights (the model may be loaded before or after the
        optimizer, or from another checkpoint)."""
        if self.mode == "master" and self.applies(bucket.dtype):
            bucket.precision.versions = [] if loaded else list(map(VERSION, bucket.params))

    def pieces(
        self,
        bucket: Any,
        run: Any,
        state: dict[str, torch.Tensor],
        chunked: bool,
    ) -> Iterator[Work]:
        """What the rule updates for one run: float32 tensors, in pieces if ``chunked``.

        ``state`` holds the run's slices of the rule's state and of this mode's. Each
        :class:`Work` is handed to the rule, then its ``finish()`` writes the result back:
        the rounded parameters, the state in its own dtype, the compensation. A rule is
        ``chunked`` only when it is elementwise (a built-in rule without a layout), so
        that its float32 working copies stay small: the pieces give the same numbers as
        one call on the whole run.
        """
        extra = {name: state[name] for name in NAMES if name in state}
        rule_state = {k: v for k, v in state.items() if k not in NAMES}
        size = run.stop - run.start
        piece = chunk_size(bucket.device) if chunked else size
        if any(v.numel() != size for v in rule_state.values()):
            piece = size  # state of another shape than the parameters': one piece
        param = bucket.param[run.start : run.stop]
        grad = bucket.grad[run.start : run.stop]
        k1, k2 = keys(self.seed, bucket.precision.salt, run.step)
        for lo in range(0, max(size, 1), max(piece, 1)):
            hi = min(lo + max(piece, 1), size)
            yield self._work(bucket, run.start + lo, param[lo:hi], grad[lo:hi],
                             {k: v[lo:hi] for k, v in rule_state.items()},
                             {k: v[lo:hi] for k, v in extra.items()}, (k1, k2))  # fmt: skip

    def _work(self, bucket, start, param, grad, rule_state, extra, key) -> Work:
        mode, extra = self.mode, next(iter(extra.values()), None)
        w, g, state = begin(mode, param, grad, rule_state, extra)

        def finish() -> None:
            end(mode, param, w, rule_state, state, extra, (*key, start))

        return Work(w, g, state, finish)

    def fused_state(
        self, bucket: Any, run: Any, state: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor | None]:
        """The state a :func:`fused` rule takes for a whole run: the rule's slices, the
        mode's (under ``EXTRA``) and the random bits' keys and first element (under
        ``KEYS``: 0-d int64 tensors on the host, which a compiled graph takes as scalar
        inputs: no step recompiles, and nothing is copied to the device)."""
        rule_state = {k: v for k, v in state.items() if k not in NAMES}
        extra = next((state[name] for name in NAMES if name in state), None)
        values = (*keys(self.seed, bucket.precision.salt, run.step), run.start)
        found = {**rule_state, **({} if extra is None else {EXTRA: extra})}
        for name, value in zip(KEYS, values, strict=True):
            found[name] = torch.tensor(value, dtype=torch.int64)
        return found

    def complete(self, entries: dict, bucket: Any) -> None:
        """Before edited entries of ``optimizer.state`` are taken in: an entry replaced
        without this mode's state (``state[p] = {"step": ..., "exp_avg": ...}``, as
        ZeroRedundancyOptimizer writes them) keeps the bucket's master weights or
        compensation, or starts them from the parameter if it has none yet."""
        for spec in self.specs(bucket.dtype):
            for i, p in enumerate(bucket.params):
                entry = entries.get(p)
                if not entry or spec.name in entry:
                    continue
                if spec.name in bucket.state and bucket.started[i]:
                    entry[spec.name] = bucket.state_slot(spec.name, i)
                elif spec.name == MASTER:
                    entry[spec.name] = bucket.slot(bucket.param, i).float()
                else:
                    entry[spec.name] = torch.zeros_like(bucket.slot(bucket.param, i))

    # -- checkpoints -----------------------------------------------------------------------

    def saved(self) -> dict[str, Any]:
        """What ``state_dict()`` keeps of the mode (plain data)."""
        dtype = None if self.state_dtype is None else str(self.state_dtype).removeprefix("torch.")
        return {"mode": self.mode, "seed": self.seed, "state_dtype": dtype}

    def loaded(self, saved: dict[str, Any] | None) -> Precision:
        """This precision, with the seed of a checkpoint saved in stochastic mode."""
        if saved and self.mode == "stochastic" and saved.get("mode") == "stochastic":
            return replace(self, seed=int(saved["seed"]))
        return self


EXTRA = "precision_extra"  # what a fused rule takes beside the rule's state
KEYS = ("precision_k1", "precision_k2", "precision_start")


def begin(mode: str, param, grad, state: dict, extra):
    """The float32 tensors a rule updates: the weights ``w`` (the master weights, a copy
    of the parameters, or parameters plus compensation), the gradient and the state
    (float32 slices as they are, others copied)."""
    work = {k: v if v.dtype == torch.float32 else v.float() for k, v in state.items()}
    if mode == "master":
        w = extra
    elif mode == "stochastic":
        w = param.float()
    else:  # kahan: exact, since |c| < ulp(p) / 2
        w = param.float() + extra.float()
    return w, grad.float(), work


def end(mode: str, param, w, state: dict, work: dict, extra, key) -> None:
    """Write a rule's float32 results back: the parameters rounded (to nearest,
    stochastically with the bits of ``key = (k1, k2, first element)``, or with the
    compensation ``c <- rn(w - p)``, exact in float32), and the state in its dtype."""
    if mode == "stochastic":
        bits = random_bits(key[2], w.numel(), key[0], key[1], w.device)
        param.copy_(stochastic_round(w, param.dtype, bits))
    else:
        param.copy_(w)  # p <- rn(w)
    if mode == "kahan":
        extra.copy_(w - param.float())  # c <- rn(w - p)
    for name, value in state.items():
        if work[name] is not value:
            value.copy_(work[name])


@functools.cache
def fused(function: Any, mode: str, names: tuple[str, ...], method: bool) -> Any:
    """``function`` with the mode's float32 casts before it and its rounding after it,
    as one function, for ``impl="compiled"``: compiled, the casts, the rule and the
    (stochastic) rounding are one generated kernel, with no float32 copy in memory.

    ``function`` is a rule's function, called ``function(param, grad, **state,
    **options)``, or, with ``method``, a class's ``update(self, group, param, grad,
    state, step, ...)``; ``names`` are the rule's state names. The state it is given
    holds, beside those, ``EXTRA`` (master weights or compensation, if the mode keeps
    them) and ``KEYS`` (:meth:`Precision.fused_state`).
    """
    if method:

        def step_method(self, group, param, grad, state, step, *rest):
            inner = {name: state[name] for name in names}
            extra, key = state.get(EXTRA), tuple(state[name] for name in KEYS)
            w, g, work = begin(mode, param, grad, inner, extra)
            function(self, group, w, g, work, step, *rest)
            end(mode, param, w, inner, work, extra, key)

        step_method.__qualname__ = f"{function.__qualname__}[precision={mode}]"
        return step_method

    def step_function(param, grad, **kwargs):
        extra, key = kwargs.pop(EXTRA, None), tuple(kwargs.pop(name) for name in KEYS)
        inner = {name: kwargs.pop(name) for name in names}
        w, g, work = begin(mode, param, grad, inner, extra)
        function(w, g, **work, **kwargs)
        end(mode, param, w, inner, work, extra, key)

    step_function.__qualname__ = f"{function.__qualname__}[precision={mode}]"
    return step_function


@functools.cache
def compiled_fused(function: Any, mode: str, names: tuple[str, ...], method: bool) -> Any:
    """:func:`fused` compiled (:class:`~minioptim.compiled.CompiledRule`), one per rule,
    mode and state names for the process.

    Compiled with inductor's ``emulate_precision_casts``: by default inductor keeps a
    fused kernel's intermediates in float32 and drops a float32 -> bfloat16 -> float32
    round trip, which would read back the unrounded weights where Kahan's
    ``c = w - rn(w)`` needs the rounded ones (the compensation would stay 0).
    """
    rule = CompiledRule(fused(function, mode, names, method), method)
    options = {"emulate_precision_casts": True}
    rule.compiled = torch.compile(rule.function, fullgraph=True, dynamic=True, options=options)
    return rule


@dataclass
class BucketPrecision:
    """A bucket's part of the precision mode: the salt of its random bits (from its
    position in the optimizer, so it is the same in every run), and its parameters'
    version counters after the last update (``"master"`` mode)."""

    salt: int
    versions: list[int] = field(default_factory=list)


@dataclass
class Work:
    """What a rule updates for one piece of a run (float32), and how to write it back."""

    param: torch.Tensor
    grad: torch.Tensor
    state: dict[str, torch.Tensor]
    finish: Any


@functools.cache
def salt(group: int, bucket: int) -> int:
    """The salt of bucket ``bucket`` of param group ``group``."""
    return mix32(mix32(group & M32) ^ (bucket & M32))


def restore_uncast(optimizer: Any, state_dict: dict[str, Any]) -> None:
    """Undo torch.optim's cast of loaded state to each parameter's dtype where a bucket
    keeps that state in another dtype (master weights, float32 moments): the values are
    copied from ``state_dict`` itself, so a resumed run continues exactly."""
    saved_ids = [i for group in state_dict["param_groups"] for i in group["params"]]
    index = {id(p): i for p, i in zip(optimizer._params(), saved_ids, strict=False)}
    saved = state_dict.get("state", {})
    for bucket in optimizer._all_buckets():
        dtypes = {bucket.state_dtype, *bucket.state_dtypes.values()}
        if dtypes <= {bucket.dtype}:
            continue
        for p in bucket.params:
            entry = saved.get(index.get(id(p)))
            if not entry:
                continue
            for key, value in entry.items():
                kept = key in optimizer.state[p]
                if kept and isinstance(value, torch.Tensor) and value.is_floating_point():
                    if value.dtype != p.dtype and key != "step":
                        optimizer.state[p][key] = value.to(p.device)


def drop_unused(optimizer: Any, state_dict: dict[str, Any]) -> None:
    """Remove loaded master weights or compensations this optimizer does not keep (a
    checkpoint of another mode), so that they are not saved again, stale; and those of a
    checkpoint that minioptim did not save in that mode: ``torch.optim`` keeps entries it
    does not know and saves them again unchanged, so they may be older than the
    parameters. Dropped ones start from the parameters."""
    mode = (state_dict.get(SAVED) or {}).get("mode")
    for bucket in optimizer._all_buckets():
        keep = {spec.name for spec in optimizer.precision.specs(bucket.dtype)}
        if mode != optimizer.precision.mode:
            keep = set()
        for p in bucket.params:
            entry = optimizer.state.get(p)
            if entry:
                for name in NAMES:
                    if name in entry and name not in keep:
                        del entry[name]
