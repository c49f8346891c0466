"""The compiled training engine shared by :func:`run` and :func:`sweep`.

One *bucket* is a set of networks that share every shape: the same allocated widths (narrower
ones are width-masked), batch size, step count and recording layout. A bucket is trained by two
jitted programs: ``_init_program`` (initialisation) and ``_chunk_program`` (a fixed number of
recorded intervals of ``record_every`` steps). The host calls the chunk program repeatedly — the
same compiled program every time — and advances the progress bar in between; steps beyond ``T``
in the last chunk are skipped by a ``lax.cond`` on the (unbatched) step counter.

Structure: ``lax.scan`` over steps outside, ``vmap`` over networks inside, so the step counter
is a scalar and the conditionals (new epoch permutation, checkpoint evaluation, skipping) stay
real branches under batching.

Memory (float32, per bucket of ``N`` networks with ``P`` allocated parameters, ``K`` checkpoints,
``n`` training samples, ``B`` batch size, ``F`` features, ``S`` = sum of allocated widths):
``4·N·P·(4 + o + K + 1)`` bytes for parameters, initial parameters, parameter mask, gradients,
optimiser state (``o`` = 0 SGD, 1 momentum, 2 Adam, summed over optimisers present) and the
checkpoint buffer (one scratch slot), plus ``4·N·n`` for epoch permutations, ``~12·N·B·(F + S)``
for minibatch activations and their gradients, ``4·N·E·S`` for checkpoint evaluation in chunks of
``E`` rows, and the data set itself. :func:`estimate_bytes` implements this model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fracsgd._types import Array, PyTree
from fracsgd.models import Model, cross_entropy, squared_error

EVAL_CHUNK = 2048


class Static(NamedTuple):
    """Everything that fixes the shapes of a bucket's programs (hashable; the jit cache key)."""

    model: Model
    task: str  # "classification" | "regression"
    steps: int
    batch_size: int
    record_every: int
    records_per_chunk: int
    checkpoint_steps: tuple[int, ...]
    sampling: str
    optimizers: tuple[str, ...]  # optimisers present in the bucket (their order = opt code)
    masked: bool


class Hyper(NamedTuple):
    """Per-network traced hyper-parameters (each an array with a leading network axis)."""

    learning_rate: Array
    momentum: Array
    b1: Array
    b2: Array
    eps: Array
    opt_code: Array  # int32 index into Static.optimizers


class Consts(NamedTuple):
    params0: PyTree
    pmask: PyTree
    masks: Any  # WidthMask with leading network axis, or None
    hyper: Hyper
    data_keys: Array


class Carry(NamedTuple):
    step: Array  # int32 scalar: steps completed
    params: PyTree
    opt_state: PyTree
    perm: Array  # (N, n) int32 epoch permutations; (N, 0) with replacement sampling
    diverged_step: Array  # (N,) int32, -1 while finite
    ckpt_params: PyTree  # (K + 1, N, ...): slot K is a scratch slot written off-checkpoint
    ckpt_metrics: Array  # (K, N, 4): train loss, train accuracy, test loss, test accuracy


class Data(NamedTuple):
    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array


def _loss(task: str, out: Array, y: Array) -> Array:
    return cross_entropy(out, y) if task == "classification" else squared_error(out, y)


def _opt_init(optimizers: tuple[str, ...], params: PyTree) -> PyTree:
    state: dict[str, Any] = {}
    if "momentum" in optimizers:
        state["momentum"] = optax.trace(decay=0.0).init(params)
    if "adam" in optimizers:
        state["adam"] = optax.scale_by_adam().init(params)
    return state


def _opt_direction(optimizers, grads, state, hp):
    """Update direction ``u`` (the step is ``w ← w − γ·u``) for the network's optimiser."""
    dirs = []
    new_state: dict[str, Any] = {}
    for name in optimizers:
        if name == "sgd":
            dirs.append(grads)
        elif name == "momentum":
            u, new_state["momentum"] = optax.trace(decay=hp.momentum).update(
                grads, state["momentum"]
            )
            dirs.append(u)
        else:
            u, new_state["adam"] = optax.scale_by_adam(b1=hp.b1, b2=hp.b2, eps=hp.eps).update(
                grads, state["adam"]
            )
            dirs.append(u)
    if len(dirs) == 1:
        return dirs[0], new_state

    def pick(*leaves):
        out = leaves[0]
        for code, leaf in enumerate(leaves[1:], start=1):
            out = jnp.where(hp.opt_code == code, leaf, out)
        return out

    return jax.tree.map(pick, *dirs), new_state


def _sq_norm(tree: PyTree) -> Array:
    return jnp.sum(jnp.stack([jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)]))


def displacement(params: PyTree, params0: PyTree, pmask: PyTree) -> Array:
    """``R = ||w − w_0||_2`` over active trainable parameters (theory.md §1)."""
    diff = jax.tree.map(lambda p, q, m: (p - q) * m, params, params0, pmask)
    return jnp.sqrt(_sq_norm(diff))


def evaluate(model: Model, task: str, params: PyTree, mask, x: Array, y: Array) -> Array:
    """``[mean loss, accuracy]`` over ``(x, y)`` in chunks of ``EVAL_CHUNK`` rows (accuracy is
    NaN for regression)."""
    n = x.shape[0]
    chunk = min(EVAL_CHUNK, n)
    pad = (-n) % chunk
    xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(-1, chunk, *x.shape[1:])
    ys = jnp.pad(y, [(0, pad)] + [(0, 0)] * (y.ndim - 1)).reshape(-1, chunk, *y.shape[1:])
    ws = (jnp.arange(n + pad) < n).astype(jnp.float32).reshape(-1, chunk)

    def one(args):
        xc, yc, wc = args
        out = model.apply(params, xc, mask)
        if task == "classification":
            logp = jax.nn.log_softmax(out)
            nll = -jnp.take_along_axis(logp, yc[:, None], axis=1)[:, 0]
            correct = (jnp.argmax(out, axis=-1) == yc).astype(jnp.float32)
        else:
            nll = 0.5 * jnp.sum(jnp.square(out - yc), axis=-1)
            correct = jnp.full(nll.shape, jnp.nan)
        return jnp.sum(nll * wc), jnp.sum(correct * wc)

    nll_sum, correct_sum = jax.lax.map(one, (xs, ys, ws))
    return jnp.stack([jnp.sum(nll_sum) / n, jnp.sum(correct_sum) / n])


def _init_program(
    static: Static, init_keys: Array, masks, data_keys: Array, hyper: Hyper, data: Data
) -> tuple[Carry, Consts]:
    model = static.model
    n_nets = init_keys.shape[0]
    if static.masked:
        params0 = jax.vmap(model.init)(init_keys, masks)
        pmask = jax.vmap(model.param_mask)(masks)
    else:
        params0 = jax.vmap(lambda k: model.init(k))(init_keys)
        pmask = jax.vmap(lambda _: model.param_mask())(init_keys)
    opt_state = jax.vmap(lambda p: _opt_init(static.optimizers, p))(params0)
    n = data.x_train.shape[0]
    perm_len = n if static.sampling == "epoch" else 0
    k = len(static.checkpoint_steps)
    carry = Carry(
        step=jnp.zeros((), jnp.int32),
        params=params0,
        opt_state=opt_state,
        perm=jnp.zeros((n_nets, perm_len), jnp.int32),
        diverged_step=jnp.full((n_nets,), -1, jnp.int32),
        ckpt_params=jax.tree.map(lambda p: jnp.zeros((k + 1, *p.shape), p.dtype), params0),
        ckpt_metrics=jnp.full((k, n_nets, 4), jnp.nan, jnp.float32),
    )
    return carry, Consts(params0, pmask, masks, hyper, data_keys)


def _net_step(static: Static, params, opt_state, pmask, mask, hp: Hyper, xb, yb):
    model = static.model

    def loss_of(p):
        out, stats = model.apply_train(p, xb, mask)
        return _loss(static.task, out, yb), stats

    (loss, stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    grads = jax.tree.map(jnp.multiply, grads, pmask)
    direction, new_opt = _opt_direction(static.optimizers, grads, opt_state, hp)
    new_params = jax.tree.map(
        lambda p, u, m: p - hp.learning_rate * u * m, params, direction, pmask
    )
    if model.batch_norm:
        new_params = {**new_params, "batch_stats": stats}
    gsq = _sq_norm(grads)
    ok = jnp.isfinite(loss) & jnp.isfinite(gsq) & jnp.isfinite(_sq_norm(new_params))
    return new_params, new_opt, loss, jnp.sqrt(gsq), ok


def _batch_indices(static: Static, carry: Carry, consts: Consts, n: int):
    t = carry.step
    b = static.batch_size
    if static.sampling == "replacement":
        idx = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, t), (b,), 0, n))(
            consts.data_keys
        )
        return idx, carry.perm
    per_epoch = n // b
    pos = t % per_epoch

    def new_perm():
        epoch = t // per_epoch
        return jax.vmap(
            lambda k: jax.random.permutation(jax.random.fold_in(k, epoch), n).astype(jnp.int32)
        )(consts.data_keys)

    perm = jax.lax.cond(pos == 0, new_perm, lambda: carry.perm)
    idx = jax.vmap(lambda p: jax.lax.dynamic_slice(p, (pos * b,), (b,)))(perm)
    return idx, perm


def _train_step(static: Static, carry: Carry, consts: Consts, data: Data):
    n = data.x_train.shape[0]
    idx, perm = _batch_indices(static, carry, consts, n)
    xb = data.x_train[idx]
    yb = data.y_train[idx]
    masks_axis = 0 if static.masked else None
    step = jax.vmap(
        lambda p, o, pm, m, hp, x, y: _net_step(static, p, o, pm, m, hp, x, y),
        in_axes=(0, 0, 0, masks_axis, 0, 0, 0),
    )
    new_params, new_opt, loss, gnorm, ok = step(
        carry.params, carry.opt_state, consts.pmask, consts.masks, consts.hyper, xb, yb
    )
    was_ok = carry.diverged_step < 0
    keep_new = was_ok & ok

    def sel(new, old):
        shape = (-1,) + (1,) * (new.ndim - 1)
        return jnp.where(keep_new.reshape(shape), new, old)

    params = jax.tree.map(sel, new_params, carry.params)
    opt_state = jax.tree.map(sel, new_opt, carry.opt_state)
    diverged_step = jnp.where(was_ok & ~ok, carry.step, carry.diverged_step)
    t1 = carry.step + 1

    # checkpoints: write into slot k at checkpoint steps, into the scratch slot otherwise
    ck = jnp.asarray(static.checkpoint_steps, jnp.int32)
    hit = ck == t1
    is_ck = jnp.any(hit)
    slot = jnp.where(is_ck, jnp.argmax(hit), len(static.checkpoint_steps))
    ckpt_params = jax.tree.map(
        lambda buf, p: jax.lax.dynamic_update_index_in_dim(buf, p, slot, 0),
        carry.ckpt_params,
        params,
    )

    def do_eval(metrics):
        def one(p, m):
            tr = evaluate(static.model, static.task, p, m, data.x_train, data.y_train)
            te = evaluate(static.model, static.task, p, m, data.x_test, data.y_test)
            return jnp.concatenate([tr, te])

        vals = jax.vmap(one, in_axes=(0, masks_axis))(params, consts.masks)
        return jax.lax.dynamic_update_index_in_dim(metrics, vals, jnp.argmax(hit), 0)

    ckpt_metrics = jax.lax.cond(is_ck, do_eval, lambda m: m, carry.ckpt_metrics)
    loss = jnp.where(was_ok, loss, jnp.nan)
    new_carry = Carry(t1, params, opt_state, perm, diverged_step, ckpt_params, ckpt_metrics)
    return new_carry, (loss, gnorm)


def _chunk_program(static: Static, carry: Carry, consts: Consts, data: Data):
    n_nets = carry.diverged_step.shape[0]

    def one_step(c: Carry, _):
        def skip(c):
            nan = jnp.full((n_nets,), jnp.nan, jnp.float32)
            return c._replace(step=c.step + 1), (nan, nan)

        return jax.lax.cond(
            c.step < static.steps, lambda c: _train_step(static, c, consts, data), skip, c
        )

    def one_record(c: Carry, _):
        c, (losses, gnorms) = jax.lax.scan(one_step, c, None, length=static.record_every)
        r = jax.vmap(displacement)(c.params, consts.params0, consts.pmask)
        r = jnp.where(c.diverged_step < 0, r, jnp.nan)
        return c, (r, jnp.mean(losses, axis=0), gnorms[-1])

    return jax.lax.scan(one_record, carry, None, length=static.records_per_chunk)


init_program = jax.jit(_init_program, static_argnums=0)
chunk_program = jax.jit(_chunk_program, static_argnums=0, donate_argnums=1)


def optimizer_state_multiplier(optimizers: tuple[str, ...]) -> int:
    return ("momentum" in optimizers) + 2 * ("adam" in optimizers)


def estimate_bytes(
    static: Static, num_networks: int, num_train: int, num_features: int, data_bytes: int
) -> int:
    """Bytes one bucket needs on the device (the memory model of the module docstring)."""
    model = static.model
    p = model.num_params() + sum(2 * w for w in model.hidden if model.batch_norm)
    k = len(static.checkpoint_steps)
    o = optimizer_state_multiplier(static.optimizers)
    s = sum(model.widths[1:])
    per_net = 4 * p * (4 + o + k + 1)
    if static.sampling == "epoch":
        per_net += 4 * num_train
    per_net += 12 * static.batch_size * (num_features + s)
    per_net += 4 * min(EVAL_CHUNK, num_train) * s * 2
    return int(num_networks * per_net + data_bytes)


def available_bytes(device: jax.Device | None = None) -> int | None:
    """Memory the default device can hold: the accelerator's limit, or the host's available
    memory for CPU devices. ``None`` when it cannot be determined."""
    device = device or jax.devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # pragma: no cover - backend without memory stats
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux host
        pass
    return None


def to_host(tree: PyTree) -> PyTree:
    return jax.tree.map(np.asarray, jax.device_get(tree))
