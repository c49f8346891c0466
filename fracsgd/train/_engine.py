"""The compiled training engine shared by :func:`run` and :func:`sweep`.

One *bucket* is a set of networks that share every shape: the same allocated widths (narrower
ones are width-masked), batch size, step count and recording layout. A bucket is trained by three
jitted programs: ``init_program`` (initialisation), ``segment_program`` (run the steps from the
current step to a *traced* end step) and ``eval_program`` (full train/test loss and accuracy).
The host runs segments that end at every checkpoint step and at about twenty evenly spaced steps
(the progress bar advances in between), copies the parameters to host memory at checkpoints and
evaluates them there. Because the end step is data, every segment runs the same compiled program,
and nothing of size ``K × parameters`` ever sits in the loop state.

Inside a segment: a ``while_loop`` over epochs derives each network's permutation round keys once
per epoch (epoch sampling), and an inner ``while_loop`` runs the steps of that epoch, evaluating
the permutation at the step's ``B`` positions (:func:`fracsgd.data.epoch_batch`, a keyed Feistel
permutation: nothing of size ``n`` is stored or sorted). ``vmap`` over networks is inside the
step, so the step counter is a scalar. Records (``R``, interval-mean minibatch loss, gradient
norm) are written into a small ``(N, records + 1)`` buffer; column ``records`` is a scratch slot
written on non-record steps, so the write is unconditional.

Memory (float32, per bucket of ``N`` networks with ``P`` allocated parameters, ``n`` training
samples, ``B`` batch size, ``F`` features, ``S`` = sum of allocated widths): ``4·N·P·(5 + o)`` bytes
on the device for parameters, initial parameters, parameter mask, gradients, the updated copy and
the optimiser state (``o`` = 0 SGD, 1 momentum, 2 Adam, summed over optimisers present),
``~12·N·B·(F + S)`` for minibatch activations and their gradients, ``8·N·E·S`` for evaluation in
chunks of ``E`` rows, ``12·N·(T/k + 1)`` for the records of ``T`` steps every ``k`` (which stay on
the device for the whole run: long runs of small networks are dominated by them), and the data
set. Checkpoints (``4·N·P·K``) go to host memory as they are
reached. :func:`estimate_bytes` implements this model; :func:`fracsgd.train.sweep` uses it per
device to split a bucket that does not fit into chunks (:func:`fracsgd.parallel.chunk_plan`) and
shards each chunk's networks over a device mesh when given one. Every operation acts on one network
at a time under ``vmap`` — no computation mixes networks — so a network's numbers do not depend on
how many others share its program, chunk or device beyond float32 rounding: XLA may vectorise or
fuse an element's arithmetic differently for another local batch size (Adam's updates differ in
the last bit between 4 devices × 3 networks and 4 chunks of 3 on one device; SGD's are bitwise
equal in ``tests/parallel``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from fracsgd._types import Array, PyTree
from fracsgd._xla import jit
from fracsgd.data._shuffle import batch_of_epoch, round_keys
from fracsgd.models import Model
from fracsgd.parallel import BATCH, REPLICATED, batch_mesh, device_memory, map_elements, per_shard
from fracsgd.parallel import to_host as parallel_to_host

EVAL_CHUNK = 4096


class Static(NamedTuple):
    """Everything that fixes the shapes of a bucket's programs (hashable; the jit cache key)."""

    model: Model
    task: str  # "classification" | "regression"
    steps: int
    batch_size: int
    record_every: int
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
    diverged_step: Array  # (N,) int32, -1 while finite
    loss_sum: Array  # (N,) minibatch losses × _mean_scale(record_every), summed over the interval
    records: Array  # (N, records + 1, 3): R, interval-mean loss, gradient norm; last = scratch


class Data(NamedTuple):
    x_train: Array
    y_train: Array
    x_test: Array
    y_test: Array


def _sum(v: Array) -> Array:
    """``Σ v`` of a vector by pairwise (tree) summation written as elementwise adds.

    Sums in the engine do not use ``reduce``: XLA may vectorise a reduction across the networks
    vmapped beside it and then round differently for another chunk size or device count
    (measured on CPU: the last bit of reported losses). Elementwise adds in a fixed tree are
    computed identically for every network whatever the batch, so results do not depend on
    chunking or sharding; pairwise summation is also more accurate than a running sum.

    Each level adds neighbouring pairs. The first level of odd length is zero-padded to the next
    power of two, once: not the whole vector up front (that copy of every parameter cost more
    than the additions; 784·128 = 2¹¹·49 entries pad only at length 49, to 64), and not at
    every odd level (each pad is a kernel of its own, which costs launches on a GPU)."""
    return _sum_last(v)


def _mean_scale(count: int) -> float:
    """``2^−⌈log₂ count⌉``: summing ``count`` values pre-multiplied by it cannot overflow where
    their mean is finite (losses are non-negative), and since the factor is a power of two every
    rounding of the sum is the unscaled one's, scaled: bitwise the same mean, outside the
    subnormal range (where the CPU flushes to zero: per-sample losses below ``count·2⁻¹²⁶``
    now count as 0)."""
    return 2.0 ** -max(count - 1, 0).bit_length()


def _sum_last(v: Array) -> Array:
    """:func:`_sum` over the last axis of ``v``, for every leading index at once (the same tree
    for each row, so each row's sum is bitwise :func:`_sum` of that row)."""
    if v.shape[-1] == 0:
        return jnp.zeros(v.shape[:-1], v.dtype)
    lead = v.shape[:-1]
    while v.shape[-1] > 1:
        n = v.shape[-1]
        if n % 2:
            v = jnp.pad(v, [(0, 0)] * len(lead) + [(0, (1 << (n - 1).bit_length()) - n)])
        pairs = v.reshape(*lead, -1, 2)
        v = pairs[..., 0] + pairs[..., 1]
    return v[..., 0]


def _per_sample_loss(task: str, out: Array, y: Array) -> Array:
    """``(B,)`` per-sample losses whose mean is :func:`fracsgd.models.cross_entropy` (or
    :func:`~fracsgd.models.squared_error`)."""
    if task == "classification":
        logp = jax.nn.log_softmax(out)
        return -jnp.take_along_axis(logp, y[:, None], axis=1)[:, 0]
    return 0.5 * jnp.sum(jnp.square(out - y), axis=-1)


def _loss(task: str, out: Array, y: Array) -> Array:
    nll = _per_sample_loss(task, out, y)
    scale = _mean_scale(nll.shape[0])
    return _sum(nll * scale) / nll.shape[0] / scale


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


def _square(x: Array) -> Array:
    """``x²`` (float32) computed so that XLA's fusion choices cannot change its bits.

    XLA CPU contracts a product feeding an addition into one fused multiply-add wherever the
    two land in the same fused loop, and whether they do depends on the shapes of the program
    (e.g. how many networks a chunk holds). ``x = hi + lo`` with ``hi`` the top 12 significand
    bits of ``x`` (a bit mask) makes every product below exact in float32, and an exact product
    rounds the same with or without contraction, so the result is the same whatever is fused
    (for ``|x|`` above ~1e-19, where no product is subnormal). Other dtypes get plain ``x·x``
    (the bitwise guarantee is for float32, the engine's dtype)."""
    if x.dtype != jnp.float32:
        return x * x
    hi = jax.lax.bitcast_convert_type(
        jax.lax.bitcast_convert_type(x, jnp.int32) & jnp.int32(-4096), jnp.float32
    )
    lo = x - hi  # exact: the 12 bits that hi dropped
    return hi * hi + (2.0 * hi * lo + lo * lo)


def _sq_norms(*trees: PyTree) -> Array:
    """``(Σ leaf²,)`` for each of several trees of one structure: leaf by leaf the squared
    vectors are stacked and summed pairwise in one pass (see :func:`_sum_last`; each row's sum is
    bitwise :func:`_sum` of that row), then the leaves' sums are added in their fixed tree order.
    No concatenated copy of the parameters; a leaf shared by two norms is read once."""
    total = None
    for leaves in zip(*(jax.tree.leaves(t) for t in trees), strict=True):
        part = _sum_last(jnp.stack([_square(jnp.ravel(leaf)) for leaf in leaves]))
        total = part if total is None else total + part
    return jnp.zeros((len(trees),)) if total is None else total


def _sq_norm(tree: PyTree) -> Array:
    """``Σ leaf²`` over the tree (:func:`_sq_norms` of one tree)."""
    return _sq_norms(tree)[0]


def _masked(tree: PyTree, pmask: PyTree | None) -> PyTree:
    """``tree · pmask`` leaf by leaf; ``pmask=None`` means every entry is active (a dense
    bucket: no width mask, no BatchNorm statistics), and the tree is returned unchanged."""
    return tree if pmask is None else jax.tree.map(jnp.multiply, tree, pmask)


def _active_diff(params: PyTree, params0: PyTree, pmask: PyTree | None) -> PyTree:
    """``(w − w_0)·mask`` leaf by leaf."""
    return _masked(jax.tree.map(jnp.subtract, params, params0), pmask)


def _sq_displacement(params: PyTree, params0: PyTree, pmask: PyTree | None) -> Array:
    """``R² = Σ ((w − w_0)·mask)²``. Non-finite if any entry of ``w`` is, masked ones included
    (``±inf·0 = NaN``), so it doubles as the engine's check that the parameters are finite."""
    return _sq_norm(_active_diff(params, params0, pmask))


def _grad_and_displacement_sq(grads, params, params0, pmask) -> tuple[Array, Array]:
    """``(Σ g², R²)`` in one pass over the gradient (:func:`_sq_norms`), bitwise equal to
    ``_sq_norm(grads)`` and ``_sq_displacement(params, params0, pmask)``."""
    both = _sq_norms(grads, _active_diff(params, params0, pmask))
    return both[0], both[1]


def displacement(params: PyTree, params0: PyTree, pmask: PyTree | None = None) -> Array:
    """``R = ||w − w_0||_2`` over active trainable parameters (theory.md §1).

    ``pmask`` (:meth:`fracsgd.models.Model.param_mask`) selects the active entries; ``None``
    counts every entry.

    Args:
        params: the parameters ``w_t`` (any pytree of float arrays).
        params0: the reference ``w_{t0}`` (by default the initialisation), same structure.
        pmask: ``None`` or a pytree of 0/1 floats of the same structure: ``R² = Σ ((w − w_0)·m)²``.

    Returns:
        A scalar; non-finite if any entry of ``params`` is (masked ones included), which the
        training engine uses as its divergence check.

    Examples:
        >>> import jax.numpy as jnp
        >>> w0 = {"w": jnp.zeros(3), "b": jnp.zeros(2)}
        >>> w = {"w": jnp.array([3.0, 4.0, 0.0]), "b": jnp.array([1.0, 1.0])}
        >>> round(float(displacement(w, w0)), 4)  # sqrt(9 + 16 + 1 + 1)
        5.1962
        >>> float(displacement(w, w0, {"w": jnp.ones(3), "b": jnp.zeros(2)}))  # "b" masked out
        5.0
    """
    return jnp.sqrt(_sq_displacement(params, params0, pmask))


def evaluate(model: Model, task: str, params: PyTree, mask, x: Array, y: Array) -> Array:
    """``[mean loss, accuracy]`` over ``(x, y)`` in chunks of ``EVAL_CHUNK`` rows (accuracy is
    NaN for regression).

    A data set of at most ``EVAL_CHUNK`` rows is evaluated in one call, without copying it; a
    larger one in ``⌊n / EVAL_CHUNK⌋`` full chunks (``lax.map``) plus one call on the remaining
    rows, so nothing is padded."""

    def sums(xc, yc):
        out = model.apply(params, xc, mask)
        nll = _per_sample_loss(task, out, yc)
        if task == "classification":
            correct = (jnp.argmax(out, axis=-1) == yc).astype(jnp.float32)
        else:
            correct = jnp.full(nll.shape, jnp.nan)
        return jnp.stack([_sum(nll * scale), _sum(correct)])

    n = x.shape[0]
    scale = _mean_scale(n)  # losses of a diverging network: no sum overflows a finite mean
    full = n // EVAL_CHUNK
    if full == 0:
        total = sums(x, y)
    else:
        m = full * EVAL_CHUNK
        xs = x[:m].reshape(full, EVAL_CHUNK, *x.shape[1:])
        ys = y[:m].reshape(full, EVAL_CHUNK, *y.shape[1:])
        per_chunk = jax.lax.map(lambda a: sums(*a), (xs, ys))  # (full, 2)
        total = jnp.stack([_sum(per_chunk[:, 0]), _sum(per_chunk[:, 1])])
        if m < n:
            total = total + sums(x[m:], y[m:])
    return jnp.stack([total[0] / n / scale, total[1] / n])


def _init_program(
    static: Static, init_keys: Array, masks, data_keys: Array, hyper: Hyper, data: Data
) -> tuple[Carry, Consts]:
    model = static.model
    if static.masked:
        params0 = jax.vmap(model.init)(init_keys, masks)
    else:
        params0 = jax.vmap(lambda k: model.init(k))(init_keys)
    return _start_program(static, params0, masks, data_keys, hyper)


def _start_program(
    static: Static, params0: PyTree, masks, data_keys: Array, hyper: Hyper
) -> tuple[Carry, Consts]:
    """Loop state for networks that start at given parameters ``params0`` (leading network
    axis): fresh optimiser state, ``R`` measured from ``params0``."""
    model = static.model
    n_nets = data_keys.shape[0]
    if static.masked:
        pmask = jax.vmap(model.param_mask)(masks)
    elif model.batch_norm:
        pmask = jax.vmap(lambda _: model.param_mask())(data_keys)
    else:
        pmask = None  # every parameter active: no mask to multiply by (see _masked)
    opt_state = jax.vmap(lambda p: _opt_init(static.optimizers, p))(params0)
    n_records = static.steps // static.record_every
    carry = Carry(
        step=jnp.zeros((), jnp.int32),
        params=params0,
        opt_state=opt_state,
        diverged_step=jnp.full((n_nets,), -1, jnp.int32),
        loss_sum=jnp.zeros((n_nets,), jnp.float32),
        records=jnp.full((n_nets, n_records + 1, 3), jnp.nan, jnp.float32),
    )
    return carry, Consts(params0, pmask, masks, hyper, data_keys)


def _net_step(static: Static, params, params0, opt_state, pmask, mask, hp: Hyper, xb, yb):
    """One network's step: new parameters and optimiser state, the minibatch loss, the gradient
    norm, ``R²`` of the new parameters, and whether all of these are finite."""
    model = static.model

    def loss_of(p):
        out, stats = model.apply_train(p, xb, mask)
        return _loss(static.task, out, yb), stats

    (loss, stats), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    grads = _masked(grads, pmask)
    direction, new_opt = _opt_direction(static.optimizers, grads, opt_state, hp)
    new_params = jax.tree.map(
        lambda p, u: p - hp.learning_rate * u, params, _masked(direction, pmask)
    )
    if model.batch_norm:
        new_params = {**new_params, "batch_stats": stats}
    # R² of the new parameters is finite iff every new entry is (masked entries and BatchNorm
    # statistics included, see _sq_displacement) and ||w − w_0|| has not overflowed: one pass
    # serves both the record and the divergence check
    gsq, rsq = _grad_and_displacement_sq(grads, new_params, params0, pmask)
    ok = jnp.isfinite(loss) & jnp.isfinite(gsq) & jnp.isfinite(rsq)
    return new_params, new_opt, loss, jnp.sqrt(gsq), jnp.sqrt(rsq), ok


def _batch_indices(static: Static, t: Array, consts: Consts, keys: Array | None, n: int):
    """Minibatch indices ``(N, B)`` of step ``t`` (0-based). Epoch sampling: positions
    ``[pos·B, (pos+1)·B)`` of the epoch's permutation, evaluated statelessly from the epoch's
    round keys ``keys (N, ROUNDS)`` (:func:`fracsgd.data.epoch_batch`); replacement: uniform
    draws keyed by ``fold_in(data_key, t)`` (int32 under ``jax_enable_x64`` too)."""
    b = static.batch_size
    if static.sampling == "replacement":
        # int32 explicitly: the default integer is int64 under jax_enable_x64, and randint draws
        # other bits for another dtype, so the minibatches (and a resumed sweep's chunks) would
        # depend on the x64 flag
        return jax.vmap(
            lambda k: jax.random.randint(jax.random.fold_in(k, t), (b,), 0, n, dtype=jnp.int32)
        )(consts.data_keys)
    pos = t % (n // b)
    return jax.vmap(lambda k: batch_of_epoch(k, pos, n, b))(keys)


def _train_step(static: Static, carry: Carry, consts: Consts, data: Data, keys):
    n = data.x_train.shape[0]
    idx = _batch_indices(static, carry.step, consts, keys, n)
    xb = data.x_train[idx]
    yb = data.y_train[idx]
    masks_axis = 0 if static.masked else None
    step = jax.vmap(
        lambda p, p0, o, pm, m, hp, x, y: _net_step(static, p, p0, o, pm, m, hp, x, y),
        in_axes=(0, 0, 0, 0, masks_axis, 0, 0, 0),
    )
    new_params, new_opt, loss, gnorm, r_new, ok = step(
        carry.params,
        consts.params0,
        carry.opt_state,
        consts.pmask,
        consts.masks,
        consts.hyper,
        xb,
        yb,
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
    # records: at t1 = j·k write column j − 1, otherwise the scratch column
    every = static.record_every
    scale = _mean_scale(every)  # a finite interval mean never overflows on the way
    loss_sum = carry.loss_sum + jnp.where(was_ok, loss * scale, jnp.nan)
    is_record = t1 % every == 0
    n_records = carry.records.shape[1] - 1
    col = jnp.where(is_record, t1 // every - 1, n_records)
    # a network still running took its new parameters, whose R the step measured
    r = jnp.where(diverged_step < 0, r_new, jnp.nan)
    gnorm = jnp.where(diverged_step < 0, gnorm, jnp.nan)  # not the frozen network's gradient
    row = jnp.stack([r, loss_sum / every / scale, gnorm], axis=-1)
    records = jax.lax.dynamic_update_index_in_dim(carry.records, row, col, 1)
    loss_sum = jnp.where(is_record, 0.0, loss_sum)
    return Carry(t1, params, opt_state, diverged_step, loss_sum, records)


def _segment_program(static: Static, carry: Carry, consts: Consts, data: Data, t_end: Array):
    """Run steps ``carry.step … t_end − 1`` (``t_end`` is traced: one program for all
    segments)."""
    n = data.x_train.shape[0]
    if static.sampling == "replacement":
        return jax.lax.while_loop(
            lambda c: c.step < t_end, lambda c: _train_step(static, c, consts, data, None), carry
        )
    per_epoch = n // static.batch_size

    def epoch_piece(c: Carry) -> Carry:
        epoch = c.step // per_epoch
        keys = jax.vmap(lambda k: round_keys(jax.random.fold_in(k, epoch)))(consts.data_keys)
        stop = jnp.minimum(t_end, (epoch + 1) * per_epoch)
        return jax.lax.while_loop(
            lambda c: c.step < stop, lambda c: _train_step(static, c, consts, data, keys), c
        )

    return jax.lax.while_loop(lambda c: c.step < t_end, epoch_piece, carry)


def _eval_program(static: Static, params: PyTree, masks, data: Data, mesh=None) -> Array:
    """``(N, 4)``: full-data train loss, train accuracy, test loss, test accuracy (one network
    at a time on CPU, see :func:`fracsgd.parallel.map_elements`)."""

    def one(pm, d: Data):
        p, m = pm
        tr = evaluate(static.model, static.task, p, m, d.x_train, d.y_train)
        te = evaluate(static.model, static.task, p, m, d.x_test, d.y_test)
        return jnp.concatenate([tr, te])

    return map_elements(one, (params, masks), data, mesh)


_CARRY: Any = Carry(*([REPLICATED] + [BATCH] * 5))  # type: ignore[arg-type]  # specs


def _init_entry(static, init_keys, masks, data_keys, hyper, data, mesh=None):
    fn = per_shard(
        lambda *a: _init_program(static, *a),
        mesh,
        (BATCH, BATCH, BATCH, BATCH, REPLICATED),
        (_CARRY, BATCH),
    )
    return fn(init_keys, masks, data_keys, hyper, data)


def _segment_entry(static, carry, consts, data, t_end, mesh=None):
    fn = per_shard(
        lambda *a: _segment_program(static, *a),
        mesh,
        (_CARRY, BATCH, REPLICATED, REPLICATED),
        _CARRY,
    )
    return fn(carry, consts, data, t_end)


# the compiled entry points; ``mesh`` (static) shards the networks axis with shard_map
init_program = jit(_init_entry, static_argnums=0, static_argnames="mesh")
start_program = jit(_start_program, static_argnums=0)
segment_program = jit(_segment_entry, static_argnums=0, static_argnames="mesh", donate_argnums=1)
# full-data evaluation runs large products (thousands of rows), where YNNPACK measured faster
# (784-128-10, 4 networks, 5 000 images: 24 against 36 ms), so it keeps XLA's default options
eval_program = jax.jit(_eval_program, static_argnums=(0, 4))


def optimizer_state_multiplier(optimizers: tuple[str, ...]) -> int:
    return ("momentum" in optimizers) + 2 * ("adam" in optimizers)


def estimate_bytes(
    static: Static, num_networks: int, num_train: int, num_features: int, data_bytes: int
) -> int:
    """Bytes one bucket needs on the device (the memory model of the module docstring).

    Per network, in float32: ``4·P·(5 + o)`` for parameters, initial parameters, parameter
    mask, gradients, the updated copy and optimiser state (``P`` allocated trainable parameters
    plus BatchNorm running statistics; ``o`` = 1 if momentum and 2 if Adam is among
    ``static.optimizers``, summed), ``12·B·(F + S)`` for minibatch activations and their
    gradients (``S`` = the sum of the hidden and output widths), ``8·E·S`` for evaluation in
    chunks of ``E = min(4096, n)`` rows, and ``12·(T // k + 1)`` for the records of ``T`` steps
    every ``k``. The data set's ``data_bytes`` are added once.

    Args:
        static: the bucket's shapes (``BucketInfo.static`` from :func:`plan_sweep`).
        num_networks: networks held on the device at once (a chunk on one device).
        num_train: training samples ``n``.
        num_features: input features ``F``.
        data_bytes: bytes of the data set on the device.

    Returns:
        ``num_networks · per_network + data_bytes``, an integer number of bytes.

    Examples:
        >>> import fracsgd as fs
        >>> data = fs.data.load("moons", n=256, noise=0.1, seed=0)
        >>> grid = fs.train.Grid(hidden=(8,), seeds=(0,), batch_sizes=(32,), steps=100)
        >>> (bucket,) = fs.train.plan_sweep(data, grid)
        >>> static = bucket.static  # widths (2, 8, 2): P = 42, S = 10; SGD: o = 0; k = 1
        >>> static.model.num_params(), static.optimizers, static.record_every
        (42, ('sgd',), 1)
        >>> 4 * 42 * 5 + 12 * 32 * (2 + 10) + 8 * 256 * 10 + 12 * (100 + 1)
        27140
        >>> estimate_bytes(static, 1, 256, 2, 0), estimate_bytes(static, 2, 256, 2, 1000)
        (27140, 55280)
    """
    model = static.model
    p = model.num_params() + sum(2 * w for w in model.hidden if model.batch_norm)
    o = optimizer_state_multiplier(static.optimizers)
    s = sum(model.widths[1:])
    per_net = 4 * p * (5 + o)
    per_net += 12 * static.batch_size * (num_features + s)
    per_net += 4 * min(EVAL_CHUNK, num_train) * s * 2
    per_net += 12 * (static.steps // static.record_every + 1)  # the records buffer
    return int(num_networks * per_net + data_bytes)


def available_bytes(device: jax.Device | None = None) -> int | None:
    """Memory the default device (or ``device``) can hold: the accelerator's limit, or the
    host's available memory for CPU devices. ``None`` when it cannot be determined."""
    return device_memory(None if device is None else batch_mesh([device]))


def to_host(tree: PyTree) -> PyTree:
    """NumPy copies, gathered from every device and host (:func:`fracsgd.parallel.to_host`)."""
    return parallel_to_host(tree)
