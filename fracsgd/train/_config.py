"""Training configuration and its validation (before anything is traced)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from fracsgd._checks import refuse_traced_value

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam")
SAMPLINGS: tuple[str, ...] = ("epoch", "replacement")


class TrainConfig(NamedTuple):
    """Hyper-parameters of one training run.

    Shape-setting fields (``steps``, ``batch_size``, ``record_every``, ``num_checkpoints``,
    ``sampling``) and the ``optimizer`` (which optimizer state exists) are static: changing them
    compiles a new program. The numbers (``learning_rate``, ``momentum``, ``b1``, ``b2``,
    ``eps``) are traced data, held in float32: each must lie in its range after rounding to
    float32 too (``learning_rate = 1e-46`` would be 0, ``b2 = 1 − 1e-9`` would be 1), or
    ``ValueError``.

    Attributes:
        steps: number of SGD steps ``T`` (``0 < T < 2**31``: the engine counts steps in
            int32). Time in fracsgd is the step count.
        batch_size: minibatch size ``B`` (1 ≤ B ≤ number of training samples).
        learning_rate: ``γ`` (> 0), the paper's "friction".
        optimizer: ``"sgd"``, ``"momentum"`` (heavy ball, ``v ← μ v + g; w ← w − γ v``, as in
            PyTorch) or ``"adam"`` (optax ``scale_by_adam``).
        momentum: ``μ`` of ``"momentum"``, in [0, 1).
        b1, b2, eps: Adam's decay rates (in [0, 1)) and ε (> 0).
        sampling: ``"epoch"`` (a fresh permutation per epoch, the last incomplete batch of an
            epoch dropped) or ``"replacement"`` (independent uniform draws every step).
        record_every: record ``R(t)``, the minibatch loss and the gradient norm every k steps;
            ``steps`` must be a multiple of it.
        num_checkpoints: K log-spaced steps in [1, T] (the final step always included) at which
            parameters are stored and the full train and test loss and accuracy evaluated. Only
            T distinct steps exist, so K > T is clamped to T (every step a checkpoint): the
            default 16 also works for short runs. ``TrainResult.checkpoint_steps`` lists them.

    Examples:
        >>> import fracsgd as fs
        >>> cfg = fs.train.TrainConfig(steps=100, batch_size=32)
        >>> cfg.learning_rate, cfg.optimizer, cfg.sampling  # the defaults
        (0.01, 'sgd', 'epoch')
        >>> cfg._replace(optimizer="adam", learning_rate=1e-3).optimizer
        'adam'
        >>> fs.train.log_spaced_steps(cfg.steps, 4)  # its checkpoints with num_checkpoints=4
        (1, 5, 22, 100)
    """

    steps: int = 1000
    batch_size: int = 128
    learning_rate: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    sampling: str = "epoch"
    record_every: int = 1
    num_checkpoints: int = 16


def _is_int(v: object) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def check_positive_int(name: str, value: object, *, upper: int | None = None) -> int:
    refuse_traced_value(name, value, "a positive integer")
    if not _is_int(value) or int(value) <= 0:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    v = int(value)  # type: ignore[call-overload]
    if upper is not None and v > upper:
        raise ValueError(f"{name} must be at most {upper}, got {v}")
    return v


_F32_MAX = float(np.finfo(np.float32).max)
_MAX_STEPS = 2**31 - 1  # the engine counts steps in int32


def check_float(
    name: str,
    value: object,
    *,
    lo: float,
    hi: float = math.inf,
    lo_open: bool = True,
    hi_open: bool = True,
) -> float:
    if isinstance(value, str | bytes):  # float("0.1") would pass
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err
    if isinstance(value, bool) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    lb, rb = "(" if lo_open else "[", ")" if hi_open else "]"

    def inside(x: float) -> bool:
        return (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)

    if not inside(v):
        raise ValueError(f"{name} must be in {lb}{lo}, {hi}{rb}, got {v}")
    # the training engine holds its hyper-parameters in float32: 1e-46 would be 0, 1e39 inf and
    # 1 − 1e-9 would be 1, outside the allowed range
    if abs(v) > _F32_MAX:
        raise ValueError(
            f"{name} must be at most {_F32_MAX:.7g} in magnitude (float32, the training "
            f"engine's precision), got {v}"
        )
    v32 = float(np.float32(v))
    if not inside(v32):
        raise ValueError(
            f"{name} must be in {lb}{lo}, {hi}{rb} in float32 (the training engine's "
            f"precision), got {v!r}, which is {v32!r} in float32"
        )
    return v


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(map(repr, allowed))}")
    return str(value)


def validate_config(config: TrainConfig, num_train: int) -> TrainConfig:
    """Check every field of ``config``; raise ``ValueError`` naming the first bad one."""
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a fracsgd.train.TrainConfig, got {type(config).__name__}")
    # the step counter is int32 on the device (so are its segment ends): 2**31 steps would
    # overflow only when the last segment starts, after every other step has run
    steps = check_positive_int("steps", config.steps, upper=_MAX_STEPS)
    batch = check_positive_int("batch_size", config.batch_size, upper=num_train)
    check_float("learning_rate", config.learning_rate, lo=0.0)
    check_choice("optimizer", config.optimizer, OPTIMIZERS)
    check_float("momentum", config.momentum, lo=0.0, hi=1.0, lo_open=False)
    check_float("b1", config.b1, lo=0.0, hi=1.0, lo_open=False)
    check_float("b2", config.b2, lo=0.0, hi=1.0, lo_open=False)
    check_float("eps", config.eps, lo=0.0)
    check_choice("sampling", config.sampling, SAMPLINGS)
    every = check_positive_int("record_every", config.record_every)
    if steps % every:
        raise ValueError(f"steps ({steps}) must be a multiple of record_every ({every})")
    num = check_positive_int("num_checkpoints", config.num_checkpoints)
    del batch
    return config._replace(num_checkpoints=min(num, steps))


def log_spaced_steps(steps: int, num: int) -> tuple[int, ...]:
    """``num`` distinct integers in ``[1, steps]``, as close to log-spaced as integers allow.

    The last is always ``steps``, the first 1 (for ``num > 1``); used for checkpoints so that
    log–log fits are balanced. The smallest log-spaced grid whose rounded values hold ``num``
    distinct integers is thinned evenly; grid sizes grow by one up to ``num + 256`` points, then
    by 1 %, up to ``4·num + 1024`` points. For ``num > steps/2``, or when that search ends
    (such a grid would need ~``steps · ln steps`` points), the ``num`` log-spaced targets
    ``g_i = steps^{i/(num−1)}`` are rounded and pushed up just enough to be distinct, capped so
    that every later one still fits below ``steps``:
    ``n_i = min(i + max_{j≤i}(round(g_j) − j), steps − num + 1 + i)`` (O(num) work).

    Args:
        steps: the last step ``T`` (a positive integer).
        num: how many steps to return (a positive integer ≤ ``steps``).

    Returns:
        A strictly increasing tuple of ``num`` integers ending at ``steps``.

    Raises:
        ValueError: ``steps`` or ``num`` is not a positive integer, or ``num > steps``.

    Examples:
        >>> log_spaced_steps(1000, 4)
        (1, 10, 100, 1000)
        >>> log_spaced_steps(6, 6)
        (1, 2, 3, 4, 5, 6)
    """
    steps = check_positive_int("steps", steps)
    num = check_positive_int("num_checkpoints", num, upper=steps)
    if num == 1:
        return (steps,)
    count = num
    while 2 * num <= steps and count <= 4 * num + 1024:  # dense requests: straight below
        cand = np.unique(np.rint(np.geomspace(1, steps, count)).astype(np.int64))
        if len(cand) >= num:
            # keep the endpoints; thin the interior evenly in log space
            pick = np.unique(np.rint(np.linspace(0, len(cand) - 1, num)).astype(np.int64))
            if len(pick) == num:
                return tuple(int(c) for c in cand[pick])
        count = count + 1 if count < num + 256 else max(count + 1, int(count * 1.01))
    # num close to steps: the rounded targets, pushed up to be distinct and capped below steps
    i = np.arange(num, dtype=np.int64)
    target = np.rint(np.geomspace(1, steps, num)).astype(np.int64)
    out = np.minimum(i + np.maximum.accumulate(target - i), steps - num + 1 + i)
    return tuple(int(c) for c in out)


def config_from_grid(grid: Any, batch: int, lr: float, opt: str) -> TrainConfig:
    """The :class:`TrainConfig` of one network of a sweep ``grid`` (a ``fracsgd.train.Grid``)."""
    return TrainConfig(
        steps=grid.steps,
        batch_size=int(batch),
        learning_rate=float(lr),
        optimizer=opt,
        momentum=grid.momentum,
        b1=grid.b1,
        b2=grid.b2,
        eps=grid.eps,
        sampling=grid.sampling,
        record_every=grid.record_every,
        num_checkpoints=grid.num_checkpoints,
    )
