"""Fully connected networks with maskable widths: ReLU MLPs (optionally with BatchNorm) and deep
linear networks.

Parameters are plain pytrees::

    {"layers": [{"w": (fan_in, fan_out), "b": (fan_out,)}, ...],        # "b" absent for deep_linear
     "bn": [{"scale": (h,), "bias": (h,)}, ...],                        # batch_norm=True only
     "batch_stats": [{"mean": (h,), "var": (h,)}, ...]}                 # batch_norm=True only

Layers act on row vectors, ``h_{l+1} = h_l @ w_l + b_l``; for a deep linear network the layer
``w`` is the transpose of the factor ``W_s`` of theory.md Appendix A (``y = W_L ⋯ W_1 x``).

**Width masks.** A network allocated at the largest widths plus a :data:`~fracsgd._types.WidthMask`
(one boolean vector per hidden layer) computes exactly the narrower network: inactive units are
multiplied by zero after their nonlinearity, so they contribute nothing to the output and receive
exactly zero gradient; :func:`Model.param_mask` marks the parameters that exist in the narrow
network, and the training loop and samplers multiply every update and every noise draw by it.

**Nested initialisation.** Weight ``w_l[i, j]`` is drawn from a key that depends only on
``(key, l, i, j)`` and scaled by ``sqrt(gain / fan_in)`` with the *true* (active) fan-in, so the
narrow network is literally a sub-network of the wide one with the same key: masked and unmasked
initialisations are bitwise identical on the active block. (The scale is looked up in a table of
IEEE float32 values made on the host, so a traced fan-in and a constant one give the same number
on every backend; XLA's GPU division and square root are not correctly rounded.) He scaling
(gain 2) before ReLUs, LeCun scaling (gain 1) for the output layer and for deep linear networks;
biases start at zero.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32
from jax.scipy.special import ndtri

from fracsgd._checks import check_key
from fracsgd._types import Array, PRNGKey, PyTree, WidthMask

_BN_EPS = 1e-5
_BN_MOMENTUM = 0.9  # running = momentum * running + (1 - momentum) * batch (PyTorch's 0.1 update)


class Model(NamedTuple):
    """A network as pure functions over a parameter pytree (see the module docstring).

    Attributes:
        init: ``init(key, mask=None) -> params``.
        apply: ``apply(params, x, mask=None) -> outputs`` (inference; BatchNorm uses the running
            statistics stored in ``params["batch_stats"]``).
        apply_train: ``apply_train(params, x, mask=None) -> (outputs, batch_stats)``: training
            mode; BatchNorm normalises with the minibatch statistics and returns updated running
            statistics (an empty list without BatchNorm): ``0.9 · running + 0.1 · batch`` of the
            minibatch mean and of its *biased* variance (divisor ``B``, as flax's BatchNorm;
            PyTorch's running variance uses ``B − 1``, a factor ``B/(B − 1)``: 1.008 at the
            default batch of 128).
        param_mask: ``param_mask(mask=None) -> pytree`` of float 0/1 shaped like ``params``: 1
            for every trainable parameter that exists in the (narrow) network, 0 for padding and
            for BatchNorm running statistics. Updates, noise and displacements are multiplied by it.
        width_mask: ``width_mask(hidden) -> WidthMask`` for hidden widths no larger than the
            allocated ones.
        num_params: ``num_params(mask=None) -> int`` trainable parameters of the (narrow) network
            (a traced integer under ``jit``).
        widths: allocated widths ``(input, hidden..., output)``.
        kind: ``"mlp"`` or ``"deep_linear"``.
        batch_norm: whether hidden layers are followed by BatchNorm.

    Examples:
        A network allocated at hidden width 5 and masked down to 3 units:

        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> model = fs.models.mlp((2, 5, 1))
        >>> model.hidden, model.kind, model.batch_norm
        ((5,), 'mlp', False)
        >>> mask = model.width_mask([3])
        >>> model.num_params(), int(model.num_params(mask))  # 2·5 + 5 + 5 + 1; 2·3 + 3 + 3 + 1
        (21, 13)
        >>> params = model.init(jax.random.key(0), mask)
        >>> float(jnp.abs(params["layers"][0]["w"][:, 3:]).sum())  # inactive units stay zero
        0.0
        >>> model.apply(params, jnp.ones((4, 2)), mask).shape
        (4, 1)
    """

    init: Callable[..., PyTree]
    apply: Callable[..., Array]
    apply_train: Callable[..., tuple[Array, Any]]
    param_mask: Callable[..., PyTree]
    width_mask: Callable[[Sequence[int]], WidthMask]
    num_params: Callable[..., Any]
    widths: tuple[int, ...]
    kind: str
    batch_norm: bool

    @property
    def hidden(self) -> tuple[int, ...]:
        """The allocated hidden widths."""
        return self.widths[1:-1]


def _is_integer(w: Any) -> bool:
    """An integer scalar (Python, NumPy or JAX), not a bool and not an integral float."""
    if isinstance(w, bool | np.bool_):
        return False
    if isinstance(w, int | np.integer):
        return True
    return hasattr(w, "dtype") and np.ndim(w) == 0 and np.asarray(w).dtype.kind in "iu"


def _check_widths(widths: Sequence[int], name: str = "widths") -> tuple[int, ...]:
    if isinstance(widths, str | bytes):
        raise ValueError(f"{name} must be a sequence of positive integers, got {widths!r}")
    try:
        ws = tuple(int(w) for w in widths)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{name} must be a sequence of positive integers, got {widths!r}") from err
    if not all(_is_integer(w) for w in widths):
        raise ValueError(f"{name} must contain integers, got {widths!r}")
    if len(ws) < 2:
        raise ValueError(f"{name} needs at least (input, output), got {widths!r}")
    if any(w <= 0 for w in ws):
        raise ValueError(f"{name} must all be positive (width > 0), got {widths!r}")
    if any(w >= 2**31 for w in ws):  # as fracsgd.train.Grid: array shapes and index hashing
        raise ValueError(f"{name} must all be below 2**31, got {widths!r}")
    return ws


def _indexed_normal(key: PRNGKey, shape: tuple[int, int]) -> Array:
    """Standard normals whose entry ``[i, j]`` depends only on ``(key, i, j)``.

    Unlike ``jax.random.normal(key, shape)`` the values do not depend on ``shape``, which is what
    makes narrow networks sub-networks of wide ones (nested initialisation). A counter-based
    generator: two words drawn from ``key`` (any PRNG implementation) key a Threefry-2x32 hash of
    the counter pair ``(i, j)``; the top 24 bits give ``u = (k + ½)/2^24 ∈ (0, 1)`` and the normal
    quantile ``Φ^{-1}(u)`` the value. One vectorised hash, so it compiles in well under a second.
    """
    raw = jax.random.bits(key, (2,), jnp.uint32)
    rows = jnp.arange(shape[0], dtype=jnp.uint32).reshape(-1, 1)
    cols = jnp.arange(shape[1], dtype=jnp.uint32).reshape(1, -1)
    i = jnp.broadcast_to(rows, shape).ravel()
    j = jnp.broadcast_to(cols, shape).ravel()
    bits = threefry_2x32(raw, jnp.concatenate([i, j]))[: i.size].reshape(shape)
    u = ((bits >> 8).astype(jnp.float32) + 0.5) * (1.0 / 2**24)
    return ndtri(u)


def _row(v: Array, like: Array) -> Array:
    """``v`` of shape ``(h,)`` reshaped to broadcast against ``like`` of shape ``(..., h)``
    (explicit, so that strict rank promotion holds)."""
    return v.reshape((1,) * (like.ndim - 1) + v.shape)


def _init_scale(gain: float, units: Array) -> Array:
    """``sqrt(gain / fan_in)`` as float32, ``fan_in`` the number of active units in ``units``
    (at least 1), looked up in a table computed on the host with IEEE float32 division and square
    root. Computed on the device instead, the scale of a masked network (its fan-in traced) and of
    the narrow one (its fan-in a constant that XLA folds on the host) can differ by an ulp: XLA's
    GPU division and square root are not correctly rounded (measured on an H200 with jax 0.11.2:
    ``2 / n`` wrong in 519 and ``sqrt`` in ~700 of ``n = 1…4096``). On the CPU the table holds the
    values XLA computed there before (bitwise)."""
    fans = np.maximum(np.arange(units.shape[0] + 1, dtype=np.float32), np.float32(1.0))
    table = np.sqrt(np.float32(gain) / fans)
    n = jnp.clip(jnp.round(jnp.sum(units)), 0, units.shape[0]).astype(jnp.int32)
    return jnp.asarray(table)[n]


def _full_masks(widths: tuple[int, ...]) -> list[Array]:
    """Unit masks for every layer boundary (input, hidden..., output), all active."""
    return [jnp.ones((w,), jnp.float32) for w in widths]


def _unit_masks(widths: tuple[int, ...], mask: WidthMask | None) -> list[Array]:
    units = _full_masks(widths)
    if mask is None:
        return units
    if len(mask) != len(widths) - 2:
        raise ValueError(
            f"mask must have one vector per hidden layer ({len(widths) - 2}), got {len(mask)}"
        )
    for l, m in enumerate(mask):
        if jnp.shape(m) != (widths[l + 1],):
            raise ValueError(
                f"mask[{l}] must have shape ({widths[l + 1]},) (hidden layer {l} of widths "
                f"{widths}), got {jnp.shape(m)}"
            )
        units[l + 1] = jnp.asarray(m, jnp.float32)
    return units


@functools.lru_cache(maxsize=256)
def _build(widths: tuple[int, ...], kind: str, batch_norm: bool) -> Model:
    num_layers = len(widths) - 1
    linear = kind == "deep_linear"
    use_bias = not linear and not batch_norm

    def init(key: PRNGKey, mask: WidthMask | None = None) -> PyTree:
        check_key(key)
        units = _unit_masks(widths, mask)
        layers = []
        for l in range(num_layers):
            k = jax.random.fold_in(key, l)
            gain = 1.0 if (linear or l == num_layers - 1) else 2.0
            w = _indexed_normal(k, (widths[l], widths[l + 1])) * _init_scale(gain, units[l])
            w = w * units[l][:, None] * units[l + 1][None, :]
            layer = {"w": w}
            if use_bias or (batch_norm and l == num_layers - 1):
                layer["b"] = jnp.zeros((widths[l + 1],), jnp.float32)
            layers.append(layer)
        params: dict[str, Any] = {"layers": layers}
        if batch_norm:
            params["bn"] = [
                {"scale": units[l + 1] * 1.0, "bias": jnp.zeros((widths[l + 1],), jnp.float32)}
                for l in range(num_layers - 1)
            ]
            params["batch_stats"] = [
                {"mean": jnp.zeros((widths[l + 1],), jnp.float32), "var": units[l + 1] * 1.0}
                for l in range(num_layers - 1)
            ]
        return params

    def _forward(params: PyTree, x: Array, mask: WidthMask | None, train: bool):
        units = _unit_masks(widths, mask)
        h = x
        new_stats: list[dict[str, Array]] = []
        for l, layer in enumerate(params["layers"]):
            z = h @ layer["w"]
            if "b" in layer:
                z = z + _row(layer["b"], z)
            if l == num_layers - 1:
                return z, new_stats
            if batch_norm:
                stats = params["batch_stats"][l]
                if train:
                    mean = jnp.mean(z, axis=0)
                    var = jnp.mean(jnp.square(z - _row(mean, z)), axis=0)
                    new_stats.append(
                        {
                            "mean": _BN_MOMENTUM * stats["mean"]
                            + (1 - _BN_MOMENTUM) * jax.lax.stop_gradient(mean),
                            "var": _BN_MOMENTUM * stats["var"]
                            + (1 - _BN_MOMENTUM) * jax.lax.stop_gradient(var),
                        }
                    )
                else:
                    mean, var = stats["mean"], stats["var"]
                bn = params["bn"][l]
                scale = jax.lax.rsqrt(var + _BN_EPS) * bn["scale"]
                z = (z - _row(mean, z)) * _row(scale, z) + _row(bn["bias"], z)
            h = z if linear else jax.nn.relu(z)
            h = h * _row(units[l + 1], h)
        raise AssertionError("unreachable")

    def apply(params: PyTree, x: Array, mask: WidthMask | None = None) -> Array:
        return _forward(params, x, mask, train=False)[0]

    def apply_train(params: PyTree, x: Array, mask: WidthMask | None = None):
        return _forward(params, x, mask, train=True)

    def param_mask(mask: WidthMask | None = None) -> PyTree:
        units = _unit_masks(widths, mask)
        layers = []
        for l in range(num_layers):
            layer = {"w": units[l][:, None] * units[l + 1][None, :]}
            if use_bias or (batch_norm and l == num_layers - 1):
                layer["b"] = units[l + 1] * 1.0
            layers.append(layer)
        out: dict[str, Any] = {"layers": layers}
        if batch_norm:
            out["bn"] = [
                {"scale": units[l + 1] * 1.0, "bias": units[l + 1] * 1.0}
                for l in range(num_layers - 1)
            ]
            out["batch_stats"] = [
                {
                    "mean": jnp.zeros((widths[l + 1],), jnp.float32),
                    "var": jnp.zeros((widths[l + 1],), jnp.float32),
                }
                for l in range(num_layers - 1)
            ]
        return out

    def width_mask(hidden: Sequence[int]) -> WidthMask:
        try:
            hs = _check_widths((1, *hidden, 1), "hidden")[1:-1]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"hidden must be a sequence of positive integers, got {hidden!r}"
            ) from err
        if len(hs) != num_layers - 1:
            raise ValueError(
                f"hidden must have {num_layers - 1} widths for a model with widths {widths}, "
                f"got {hidden!r}"
            )
        for h, cap in zip(hs, widths[1:-1], strict=True):
            if not 0 < h <= cap:
                raise ValueError(
                    f"hidden widths must be in [1, allocated width]; got {hs} for {widths[1:-1]}"
                )
        return tuple(jnp.arange(cap) < h for h, cap in zip(hs, widths[1:-1], strict=True))

    def num_params(mask: WidthMask | None = None) -> Any:
        pm = param_mask(mask)
        if batch_norm:
            pm = {k: v for k, v in pm.items() if k != "batch_stats"}
        total = jnp.sum(jnp.stack([jnp.sum(leaf) for leaf in jax.tree.leaves(pm)]))
        if mask is None:
            return int(total)
        return total.astype(jnp.int32)

    # jitted here so that eager calls (notebooks, tests) compile once; inside a caller's jit they
    # are inlined. The arguments are checked first, outside the jit (a string is not even a
    # valid argument of a jitted function).
    init_jit, apply_jit, apply_train_jit = jax.jit(init), jax.jit(apply), jax.jit(apply_train)

    def checked_init(key: PRNGKey, mask: WidthMask | None = None) -> PyTree:
        return init_jit(check_key(key), mask)

    def check_x(x: Any) -> None:
        if not isinstance(x, jax.Array) and np.asarray(x).dtype.kind not in "biuf":
            raise ValueError(f"x must be an array of real numbers, got {type(x).__name__}")
        if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != widths[0]:
            raise ValueError(
                f"x must have shape (..., {widths[0]}) for a model with input width {widths[0]}, "
                f"got {jnp.shape(x)}"
            )

    def checked_apply(params: PyTree, x: Array, mask: WidthMask | None = None) -> Array:
        check_x(x)
        return apply_jit(params, x, mask)

    def checked_apply_train(params: PyTree, x: Array, mask: WidthMask | None = None):
        check_x(x)
        return apply_train_jit(params, x, mask)

    return Model(
        init=checked_init,
        apply=checked_apply,
        apply_train=checked_apply_train,
        param_mask=param_mask,
        width_mask=width_mask,
        num_params=num_params,
        widths=widths,
        kind=kind,
        batch_norm=batch_norm,
    )


def mlp(widths: Sequence[int], *, batch_norm: bool = False) -> Model:
    """A fully connected ReLU network with logits out.

    Args:
        widths: ``(input, hidden..., output)``, e.g. ``(784, 128, 10)``. Every width > 0.
        batch_norm: follow every hidden linear layer by BatchNorm (dense bias dropped there);
            running statistics live in ``params["batch_stats"]`` and are excluded from the
            displacement ``R(t)`` (theory.md §1).

    Returns:
        A :class:`Model`. Models are interned: equal arguments give the same object, so compiled
        programs are reused.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> model = fs.models.mlp((4, 8, 3))
        >>> params = model.init(jax.random.key(0))
        >>> model.apply(params, jnp.ones((2, 4))).shape
        (2, 3)
        >>> model.num_params()
        67
    """
    ws = _check_widths(widths)
    if not isinstance(batch_norm, bool | np.bool_):  # bool("no") is True
        raise ValueError(f"batch_norm must be True or False, got {batch_norm!r}")
    return _build(ws, "mlp", bool(batch_norm))


def deep_linear(widths: Sequence[int]) -> Model:
    """A deep linear network ``y = W_L ⋯ W_1 x`` without biases (theory.md Appendix A).

    Args:
        widths: ``(H_1 = input, H_2, …, H_{L+1} = output)``.

    Returns:
        A :class:`Model` whose layer ``s`` holds ``w = W_{s+1}^T``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> model = fs.models.deep_linear((3, 2, 3))
        >>> model.num_params()
        12
    """
    ws = _check_widths(widths)
    return _build(ws, "deep_linear", False)


def deep_linear_params(factors: Sequence[Array]) -> PyTree:
    """Parameters of :func:`deep_linear` from factors ``W_s`` of shape ``(H_{s+1}, H_s)``.

    Layer ``s`` holds ``w = W_{s+1}^T`` (layers act on row vectors), so the network computes
    ``y = W_L ⋯ W_1 x`` (theory.md Appendix A).

    Args:
        factors: ``[W_1, …, W_L]``, ``W_s`` of shape ``(H_{s+1}, H_s)`` (converted to float32).

    Returns:
        ``{"layers": [{"w": W_1^T}, …, {"w": W_L^T}]}``, the pytree :func:`deep_linear` uses.

    Examples:
        >>> import jax.numpy as jnp
        >>> import fracsgd as fs
        >>> p = fs.models.deep_linear_params([jnp.ones((2, 3)), jnp.ones((3, 2))])
        >>> [layer["w"].shape for layer in p["layers"]]
        [(3, 2), (2, 3)]
    """
    return {"layers": [{"w": jnp.asarray(f, jnp.float32).T} for f in factors]}


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean softmax cross-entropy (negative log-likelihood) of integer ``labels``.

    ``logits`` ``(n, classes)``, ``labels`` ``(n,)`` integers (shapes and dtype are checked, also
    under ``jit``); a label outside ``[0, classes)`` gives NaN (it used to wrap around or read
    another class silently).

    ``−(1/n) Σ_i log softmax(logits_i)[labels_i]``: the empirical loss ``L_m`` of theory.md §1
    (mean negative log-likelihood) for a categorical model.

    Args:
        logits: unnormalised log-probabilities, shape ``(n, classes)``.
        labels: integer class indices, shape ``(n,)``.

    Returns:
        A scalar, NaN if a label lies outside ``[0, classes)``.

    Raises:
        ValueError: ``logits`` is not two-dimensional, ``labels`` is not an integer array or
            does not have shape ``(n,)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> round(float(cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))), 4)  # log 4
        1.3863
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (n, classes), got {logits.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(f"labels must be integers (class indices), got dtype {labels.dtype}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
    logp = jax.nn.log_softmax(logits)
    valid = (labels >= 0) & (labels < logits.shape[1])
    # the label's log-probability as a masked sum over classes (one nonzero term: exact), not a
    # gather, whose gradient is a scatter-add (on CPU ~10 small kernels per SGLD step more)
    hit = labels[:, None] == jnp.arange(logits.shape[1], dtype=labels.dtype)[None, :]
    picked = jnp.sum(jnp.where(hit, logp, 0.0), axis=1)
    return -jnp.mean(jnp.where(valid, picked, jnp.nan))


def squared_error(outputs: Array, targets: Array) -> Array:
    """Mean over samples of ``½‖y − f(x)‖²`` (Gaussian NLL with unit variance, up to a constant).

    The empirical loss ``L_m(w) = (1/m) Σ_i ½‖y_i − f(x_i; w)‖²`` of theory.md §1 (mean negative
    log-likelihood) for the Gaussian model ``y ~ N(f(x; w), I)``, dropping the constant
    ``(d/2) log 2π``; the squared loss of the deep linear networks of theory.md Appendix A.

    Args:
        outputs: model outputs ``f(x)``, shape ``(n, d)``.
        targets: targets ``y``, the same shape (checked: an ``(n, 1)`` output against ``(n,)``
            targets used to broadcast to ``(n, n)`` silently).

    Returns:
        A scalar: ``½ Σ_j (y_ij − f_ij)²`` averaged over the ``n`` rows (summed over ``d``).

    Raises:
        ValueError: ``outputs`` and ``targets`` differ in shape.

    Examples:
        >>> import jax.numpy as jnp
        >>> y = jnp.array([[1.0, 2.0], [0.0, 0.0]])
        >>> float(squared_error(y, jnp.zeros((2, 2))))  # (½·(1 + 4) + 0) / 2
        1.25
    """
    outputs, targets = jnp.asarray(outputs), jnp.asarray(targets)
    if outputs.shape != targets.shape:
        raise ValueError(
            f"outputs and targets must have the same shape, got {outputs.shape} and {targets.shape}"
        )
    return 0.5 * jnp.mean(jnp.sum(jnp.square(outputs - targets), axis=-1))


def unpad_params(model: Model, params: PyTree, hidden: Sequence[int]) -> PyTree:
    """Slice parameters of a padded ``model`` down to the narrow network with ``hidden`` widths.

    The result is a parameter pytree of ``model`` rebuilt at widths
    ``(input, *hidden, output)`` and computes the same function as the masked network (the
    inverse of :func:`pad_params` on parameters whose padding is zero).

    Args:
        model: the padded (allocated) :class:`Model`.
        params: its parameters; leaves may carry extra leading axes (e.g. stacked networks),
            only the last one or two are sliced.
        hidden: one integer width per hidden layer, each in ``[1, allocated width]``.

    Returns:
        Parameters for the model with widths ``(input, *hidden, output)``: the first
        ``hidden[l]`` units of every hidden layer.

    Raises:
        ValueError: ``hidden`` has the wrong length, a non-integer or an out-of-range width.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> wide, narrow = fs.models.mlp((2, 5, 1)), fs.models.mlp((2, 3, 1))
        >>> key = jax.random.key(0)
        >>> masked = wide.init(key, wide.width_mask([3]))  # nested initialisation
        >>> cut = unpad_params(wide, masked, [3])
        >>> [layer["w"].shape for layer in cut["layers"]]
        [(2, 3), (3, 1)]
        >>> jax.tree.all(jax.tree.map(jnp.array_equal, cut, narrow.init(key)))
        True
    """
    allocated = model.widths[1:-1]
    if isinstance(hidden, str | bytes) or np.ndim(hidden) != 1:
        raise ValueError(
            f"hidden must be a sequence of integer widths, one per hidden layer "
            f"({len(allocated)}), got {hidden!r}"
        )
    hidden = list(hidden)
    if len(hidden) != len(allocated):
        raise ValueError(
            f"hidden must give one width per hidden layer ({len(allocated)}), got {hidden!r}"
        )
    # integers only, as in width_mask: int(2.5) == 2 and int("3") == 3 used to pass silently
    if not all(_is_integer(h) for h in hidden):
        raise ValueError(f"hidden widths must be integers, got {hidden!r}")
    hs = tuple(int(h) for h in hidden)
    if any(not 1 <= h <= a for h, a in zip(hs, allocated, strict=True)):
        raise ValueError(
            f"hidden widths must lie in [1, allocated] = {allocated} per layer, got {hs}"
        )
    ws = (model.widths[0], *hs, model.widths[-1])

    def cut(path, leaf):
        keys = [getattr(p, "key", getattr(p, "idx", None)) for p in path]
        group, l, name = keys[0], keys[1], keys[2]
        if group == "layers" and name == "w":
            return leaf[..., : ws[l], : ws[l + 1]]
        if group == "layers":
            return leaf[..., : ws[l + 1]]
        return leaf[..., : ws[l + 1]]

    return jax.tree_util.tree_map_with_path(cut, params)


def pad_params(narrow: PyTree, model: Model) -> PyTree:
    """Zero-pad parameters of a narrower network up to ``model``'s allocated widths.

    The padded units have zero incoming and outgoing weights (and zero BatchNorm scale), so the
    wide network computes the narrow one's function, with or without its width mask; the
    inverse of :func:`unpad_params`.

    Args:
        narrow: parameters of a network with the same depth, kind and BatchNorm setting as
            ``model`` and no larger widths (one network: no stacked leading axes).
        model: the :class:`Model` to pad to.

    Returns:
        Parameters shaped like ``model.init(key)``, the narrow ones in the leading block and
        zeros elsewhere.

    Raises:
        ValueError: ``narrow`` has another structure than ``model``'s parameters, or a leaf
            wider than the allocated one.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import fracsgd as fs
        >>> wide, narrow = fs.models.mlp((2, 5, 1)), fs.models.mlp((2, 3, 1))
        >>> small = narrow.init(jax.random.key(0))
        >>> padded = pad_params(small, wide)
        >>> [layer["w"].shape for layer in padded["layers"]]
        [(2, 5), (5, 1)]
        >>> x = jnp.ones((4, 2))
        >>> bool(jnp.array_equal(wide.apply(padded, x), narrow.apply(small, x)))
        True
        >>> float(jnp.abs(padded["layers"][0]["w"][:, 3:]).sum())  # padding is zero
        0.0
    """

    def pad(path, leaf, target):
        if leaf.ndim != len(target.shape) or any(
            s > t for s, t in zip(leaf.shape, target.shape, strict=True)
        ):
            raise ValueError(
                f"pad_params: leaf {jax.tree_util.keystr(path)} of shape {leaf.shape} does not "
                f"fit the model's allocated shape {target.shape} (narrow must be no wider)"
            )
        widths = [(0, t - s) for s, t in zip(leaf.shape, target.shape, strict=True)]
        return jnp.pad(leaf, widths)

    template = jax.eval_shape(model.init, jax.random.key(0))
    got, want = jax.tree.structure(narrow), jax.tree.structure(template)
    if got != want:  # type: ignore[operator]  # (PyTreeDef has no typed !=)
        raise ValueError(
            f"pad_params: narrow must have the structure of the model's parameters {want}, "
            f"got {got}"
        )
    return jax.tree_util.tree_map_with_path(pad, narrow, template)
