"""Spread fracsgd's batch axes over devices and hosts, and split work that does not fit.

fracsgd's batch axes — the networks of a training bucket (seeds × widths × hyper-parameters, see
:func:`fracsgd.train.sweep`) and the ``models × chains`` rows of an LLC call
(:func:`fracsgd.llc.estimate_many`) — are independent element by element. They are sharded over
a one-dimensional device mesh whose single axis is called ``"batch"``: every array with that
leading axis is placed with ``NamedSharding(mesh, P("batch"))``, the data set is replicated
(``P()``), and the same jitted programs run; XLA partitions them without any communication,
because no computation mixes two elements. Keys are derived per element exactly as without a
mesh, so results do not depend on the number of devices beyond float32 rounding. They are often
bitwise identical on CPU (``tests/parallel`` checks 1, 4 and 8 devices and a two-process job), but
that is not guaranteed: XLA may vectorise transcendental functions (exp, log, pow) across the
elements of a program differently for another local batch size and change the last bit.

Padding: a batch axis of length ``n`` is padded to a multiple of the device count by repeating
its last element (valid keys and hyper-parameters, so padded work is ordinary work); results are
cut back to ``n``.

Chunking rule (:func:`chunk_plan`): given the bytes one element needs on a device (``per_item``,
from the caller's memory model), the bytes every device needs anyway (``fixed``: the data set and
shared buffers) and a per-device cap, one device holds ``k = ⌊(cap − fixed) / per_item⌋``
elements at once. With ``d`` devices the ``n`` elements run in ``c = ⌈n / (k·d)⌉`` chunks of
equal size ``d·⌈n / (c·d)⌉`` (the last one padded), one after another through the same compiled
program. If ``k = 0`` — a single element does not fit — a ``ValueError`` says so.

One host, several devices (GPUs, or virtual CPU devices for testing)::

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python my_sweep.py   # 4 CPU devices

    mesh = fs.parallel.batch_mesh()          # every device JAX sees
    res = fs.train.sweep(key, data, grid, mesh=mesh)
    llc = fs.llc.estimate_many(key, loss_fn, params, data, ..., mesh=mesh)

Several hosts: start the same script once per host (process); each calls
``jax.distributed.initialize`` *before any other JAX call*, then builds the global mesh over
``jax.devices()`` (all hosts' devices) and runs the same code. Every process holds only its
addressable shards; results are gathered onto every process with
``jax.experimental.multihost_utils.process_allgather`` (:func:`to_host`). With a
``checkpoint_dir``, only process 0 writes files (put the directory on a shared file system so
that every process can read them when resuming). A two-host launch::

    # host A (10.0.0.1), process 0                # host B, process 1
    python my_sweep.py --process-id 0             python my_sweep.py --process-id 1

    # inside my_sweep.py, first thing:
    jax.distributed.initialize(coordinator_address="10.0.0.1:12345", num_processes=2,
                               process_id=args.process_id)
    # CPU-only hosts also need, before initialize:
    # jax.config.update("jax_cpu_collectives_implementation", "gloo")

On clusters JAX detects the arguments itself (SLURM, Open MPI, Cloud TPU):
``jax.distributed.initialize()`` without arguments. Environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` can replace the
arguments. ``tests/parallel/test_multihost.py`` runs such a job as two processes on localhost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fracsgd._checks import refuse_traced
from fracsgd._types import PyTree

AXIS = "batch"
#: ``shard_map`` spec of an array whose leading axis is sharded over the batch mesh.
BATCH = P(AXIS)
#: ``shard_map`` spec of an array replicated on every device.
REPLICATED = P()

__all__ = [
    "AXIS",
    "BATCH",
    "REPLICATED",
    "batch_mesh",
    "check_mesh",
    "chunk_plan",
    "device_memory",
    "map_elements",
    "num_shards",
    "pad_leading",
    "per_shard",
    "replicate",
    "shard_leading",
    "to_host",
]


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-dimensional mesh with axis ``"batch"`` over ``devices`` (default: every device JAX
    sees, on every host after ``jax.distributed.initialize``).

    Args:
        devices: an ordered sequence of distinct :class:`jax.Device` (a list, tuple or
            generator), or ``None`` for ``jax.devices()``.

    Returns:
        A :class:`jax.sharding.Mesh` with the single axis ``"batch"``.

    Raises:
        ValueError: ``devices`` is empty, not a sequence of devices (a single device, a set),
            or repeats a device.

    Examples:
        >>> import jax, fracsgd as fs
        >>> mesh = fs.parallel.batch_mesh()
        >>> mesh.axis_names, mesh.size == jax.device_count()
        (('batch',), True)
    """
    msg = (
        "devices must be a non-empty sequence of jax.Device (or None for all), got "
        f"{type(devices).__name__} (a single device: [device])"
    )
    # any ordered iterable (a generator included); a set has no order to lay the mesh out by
    if isinstance(devices, jax.Device | str | bytes | set | frozenset):
        raise ValueError(msg)
    try:
        devs = list(jax.devices() if devices is None else devices)
    except TypeError as err:  # not iterable
        raise ValueError(msg) from err
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        raise ValueError("devices must be a non-empty sequence of jax.Device (or None for all)")
    if len({(d.platform, d.id) for d in devs}) != len(devs):
        raise ValueError("devices must not repeat a device")
    return Mesh(np.asarray(devs, dtype=object), (AXIS,))


def check_mesh(mesh: Any) -> Mesh | None:
    """``mesh`` if it is ``None`` or a one-dimensional :class:`jax.sharding.Mesh` with axis
    ``"batch"`` and no repeated device; otherwise ``ValueError`` naming the argument. Every
    function of this module that takes a mesh checks it so.

    Args:
        mesh: the value to check.

    Returns:
        ``mesh`` itself (``None`` stays ``None``).

    Raises:
        ValueError: ``mesh`` is neither ``None`` nor such a mesh.

    Examples:
        >>> import jax, numpy as np
        >>> from jax.sharding import Mesh
        >>> mesh = batch_mesh(jax.devices()[:1])
        >>> check_mesh(mesh) is mesh, check_mesh(None)
        (True, None)
        >>> check_mesh(Mesh(np.asarray(jax.devices()[:1]), ("x",)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: mesh must be None or a one-dimensional jax.sharding.Mesh with axis 'batch' ...
    """
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh) or tuple(mesh.axis_names) != (AXIS,):
        raise ValueError(
            "mesh must be None or a one-dimensional jax.sharding.Mesh with axis 'batch' "
            f"(fracsgd.parallel.batch_mesh()), got {mesh!r}"
        )
    devs = list(mesh.devices.flat)
    if len({(d.platform, d.id) for d in devs}) != len(devs):
        # jax.sharding.Mesh accepts a repeated device; two shards would then share it
        raise ValueError(f"mesh must not repeat a device, got {mesh!r}")
    return mesh


def num_shards(mesh: Mesh | None) -> int:
    """Devices along the batch axis (1 without a mesh); ``mesh`` is checked
    (:func:`check_mesh`).

    Args:
        mesh: ``None`` or a ``"batch"`` mesh (:func:`batch_mesh`).

    Returns:
        The number of devices of ``mesh``, or 1.

    Examples:
        >>> import jax
        >>> num_shards(None), num_shards(batch_mesh(jax.devices()[:1]))
        (1, 1)
        >>> num_shards(batch_mesh()) == jax.device_count()
        True
    """
    mesh = check_mesh(mesh)
    return 1 if mesh is None else int(mesh.size)


def pad_leading(tree: PyTree, size: int) -> PyTree:
    """Pad every leaf's leading axis to ``size`` by repeating its last element.

    Args:
        tree: a pytree of NumPy or JAX arrays with a leading axis of length ``1 … size``
            (NumPy leaves stay NumPy).
        size: the length to pad to.

    Returns:
        ``tree`` with every leading axis of length ``size`` (leaves already that long are
        returned as they are).

    Raises:
        ValueError: a leading axis is empty or longer than ``size``.

    Examples:
        >>> pad_leading(np.arange(3), 5).tolist()
        [0, 1, 2, 2, 2]
    """

    def pad(x):
        n = x.shape[0]
        if n == size:
            return x
        if n == 0 or n > size:
            raise ValueError(f"cannot pad a leading axis of {n} to {size}")
        lib = np if isinstance(x, np.ndarray) else jnp
        return lib.concatenate([x, lib.repeat(x[-1:], size - n, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _place(x: Any, sharding: NamedSharding) -> jax.Array:
    if _is_key(x):
        impl = jax.random.key_impl(x)
        return jax.random.wrap_key_data(_place(jax.random.key_data(x), sharding), impl=impl)
    host = np.asarray(x)
    # make_array_from_callback works on one host and on many (each process fills its shards)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_leading(tree: PyTree, mesh: Mesh | None) -> PyTree:
    """Place every leaf's leading axis on ``mesh`` (``NamedSharding(mesh, P("batch"))``); the
    axis must be a multiple of the device count (see :func:`pad_leading`). No-op without a mesh.

    Args:
        tree: a pytree of concrete arrays (typed PRNG keys included), not traced values.
        mesh: ``None`` or a ``"batch"`` mesh.

    Returns:
        ``tree`` with every leaf a :class:`jax.Array` sharded along its leading axis
        (``tree`` itself without a mesh).

    Raises:
        ValueError: a leading axis is not a multiple of the device count, ``mesh`` is bad, or
            a leaf is traced.

    Examples:
        >>> mesh = batch_mesh(jax.devices()[:1])
        >>> x = shard_leading(np.arange(4.0), mesh)
        >>> x.sharding.spec
        P('batch',)

    A placement of concrete arrays (host side, like :func:`jax.device_put`): under
    ``jit``, constrain shardings with ``jax.lax.with_sharding_constraint`` instead.
    """
    refuse_traced("fracsgd.parallel.shard_leading", tree=tree)
    mesh = check_mesh(mesh)
    if mesh is None:
        return tree
    d = num_shards(mesh)
    for leaf in jax.tree.leaves(tree):
        if leaf.shape[0] % d:
            raise ValueError(f"leading axis {leaf.shape[0]} is not a multiple of {d} devices")
    sharding = NamedSharding(mesh, P(AXIS))
    return jax.tree.map(lambda x: _place(x, sharding), tree)


def replicate(tree: PyTree, mesh: Mesh | None) -> PyTree:
    """A full copy of every leaf on every device of ``mesh`` (``P()``); no-op without a mesh.
    Host side, as :func:`shard_leading`.

    Args:
        tree: a pytree of concrete arrays (typed PRNG keys included), not traced values.
        mesh: ``None`` or a ``"batch"`` mesh.

    Returns:
        ``tree`` with every leaf a fully replicated :class:`jax.Array` (``tree`` itself
        without a mesh).

    Raises:
        ValueError: ``mesh`` is bad or a leaf is traced.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> mesh = batch_mesh(jax.devices()[:1])
        >>> w = replicate({"w": jnp.ones(3)}, mesh)["w"]
        >>> w.sharding.spec, w.sharding.is_fully_replicated, w.tolist()
        (P(), True, [1.0, 1.0, 1.0])
        >>> x = jnp.ones(3)
        >>> replicate(x, None) is x
        True
    """
    refuse_traced("fracsgd.parallel.replicate", tree=tree)
    mesh = check_mesh(mesh)
    if mesh is None:
        return tree
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: _place(x, sharding), tree)


def to_host(tree: PyTree) -> PyTree:
    """NumPy copies of every leaf, gathered from every device and host
    (``multihost_utils.process_allgather`` for arrays that span several processes). Host side:
    a traced leaf (under ``jit``/``vmap``) is refused by name.

    Args:
        tree: a pytree of arrays (JAX, NumPy or Python scalars), concrete.

    Returns:
        ``tree`` with every leaf a :class:`numpy.ndarray` holding the full (global) array.

    Raises:
        ValueError: a leaf is traced.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> out = to_host({"a": jnp.arange(3), "b": 1.5})
        >>> type(out["a"]).__name__, out["a"].tolist(), out["b"].tolist()
        ('ndarray', [0, 1, 2], 1.5)
        >>> try:
        ...     jax.jit(to_host)(jnp.arange(3))
        ... except ValueError as err:  # refused by name, not a tracer error deep inside
        ...     print(str(err).startswith("fracsgd.parallel.to_host runs on the host"))
        True
    """
    refuse_traced("fracsgd.parallel.to_host", tree=tree)

    def get(x):
        if not isinstance(x, jax.Array):
            return np.asarray(x)
        if x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


def per_shard(fn: Callable, mesh: Mesh | None, in_specs: Any, out_specs: Any) -> Callable:
    """``fn`` run on each device's shard (``jax.shard_map``; specs are :data:`BATCH` or
    :data:`REPLICATED` pytree prefixes); ``fn`` itself without a mesh.

    fracsgd shards with ``shard_map`` rather than by letting XLA partition a ``jit`` from its
    input shardings: each device then runs the program one device would run on its shard
    (automatic partitioning rewrites the program and may change XLA's fusion decisions, hence
    the rounding of a fused multiply-add, measured on CPU for Adam updates). Results agree with
    a chunked single-device run to float32 rounding, and are often bitwise equal (SGD in
    ``tests/parallel``), but not always: a review measured Adam's R(t) differing by 1.4e-7
    relative between 4 devices × 3 networks and 4 chunks of 3 on one device.

    Args:
        fn: the per-shard function; its leading axes are the device's local shard.
        mesh: ``None`` or a ``"batch"`` mesh.
        in_specs: specs of ``fn``'s positional arguments (a tuple, one pytree prefix each).
        out_specs: spec(s) of ``fn``'s output.

    Returns:
        A function of the global arrays (``fn`` itself without a mesh).

    Raises:
        ValueError: ``mesh`` is bad.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> scale = lambda x, s: x * s
        >>> per_shard(scale, None, (BATCH, REPLICATED), BATCH) is scale
        True
        >>> sharded = per_shard(scale, batch_mesh(jax.devices()[:1]), (BATCH, REPLICATED), BATCH)
        >>> y = sharded(jnp.arange(4.0), jnp.float32(2.0))
        >>> y.tolist(), y.sharding.spec
        ([0.0, 2.0, 4.0, 6.0], P('batch',))
    """
    mesh = check_mesh(mesh)
    if mesh is None:
        return fn
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def map_elements(
    fn: Callable[[PyTree, PyTree], PyTree],
    batched: PyTree,
    shared: PyTree,
    mesh: Mesh | None = None,
) -> PyTree:
    """``fn(element, shared)`` for every element of the leading axis of ``batched`` (inside
    ``jit``), results stacked; with ``mesh``, each device maps its own shard (``shard_map``).

    On CPU each device runs its elements one after another (``lax.map``). The reason is
    reproducibility: under ``vmap``, XLA folds a matmul of per-element weights against *shared*
    data (the full data set in an evaluation) into one wider matrix product whose rounding
    depends on how many elements sit beside each other, so results would change in the last bit
    with the chunk size or device count. On accelerators, where batching is what makes small
    programs fast and library kernels are not bitwise reproducible across shapes anyway, the
    elements are vmapped.

    With ``mesh`` the leading axis must be a multiple of the device count (``ValueError``
    naming ``batched`` otherwise): pad it first with :func:`pad_leading` and cut the results,
    as fracsgd's own batch axes are (module docstring, "Padding").

    Args:
        fn: ``fn(element, shared) -> result``, traceable; ``element`` is one slice of every
            leaf of ``batched`` along its leading axis.
        batched: a pytree whose leaves share a leading axis (the elements).
        shared: a pytree passed whole to every call (replicated over the mesh).
        mesh: ``None`` (default device) or a ``"batch"`` mesh to shard the elements over.

    Returns:
        The results of ``fn`` stacked along a new leading axis (sharded over ``mesh``).

    Raises:
        ValueError: ``mesh`` is bad or, with more than one device, the leaves of ``batched``
            differ in leading length or it is not a multiple of the device count.

    Examples:
        Each row of ``x`` dotted with a shared vector; the same numbers on a mesh:

        >>> import jax, jax.numpy as jnp
        >>> x = jnp.arange(6.0).reshape(3, 2)  # rows (0, 1), (2, 3), (4, 5)
        >>> v = jnp.array([1.0, 10.0])
        >>> map_elements(lambda row, s: row @ s, x, v).tolist()
        [10.0, 32.0, 54.0]
        >>> mesh = batch_mesh(jax.devices()[:1])
        >>> out = map_elements(lambda row, s: row @ s, x, v, mesh=mesh)
        >>> out.tolist(), out.sharding.spec
        ([10.0, 32.0, 54.0], P('batch',))
    """
    shards = num_shards(mesh)
    lengths = {int(jnp.shape(a)[0]) if jnp.ndim(a) else -1 for a in jax.tree.leaves(batched)}
    if shards > 1 and (-1 in lengths or len(lengths) != 1):
        raise ValueError(f"batched needs one leading axis length on every leaf, got {lengths}")
    n = max(lengths, default=0)
    if shards > 1 and n % shards:
        raise ValueError(
            f"batched's leading axis ({n}) must be a multiple of the mesh's {shards} devices: "
            "pad it with fracsgd.parallel.pad_leading and cut the results"
        )
    sequential = jax.default_backend() == "cpu"

    def local(b, s):
        if sequential:
            return jax.lax.map(lambda e: fn(e, s), b)
        return jax.vmap(lambda e: fn(e, s))(b)

    return per_shard(local, mesh, (BATCH, REPLICATED), BATCH)(batched, shared)


def _host_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux host
        pass
    return None  # pragma: no cover


def device_memory(mesh: Mesh | None = None) -> int | None:
    """Bytes one device of ``mesh`` (default: the default device) can still allocate: the
    smallest of the accelerators' ``bytes_limit − bytes_in_use``; for CPU devices the host's
    available memory divided by the number of this process's CPU devices (virtual CPU devices
    share it). ``None`` when it cannot be determined.

    Args:
        mesh: ``None`` (the default device) or a ``"batch"`` mesh (checked: :func:`check_mesh`).

    Returns:
        Bytes, or ``None``.

    Raises:
        ValueError: ``mesh`` is bad.

    Examples:
        >>> import jax
        >>> free = device_memory(batch_mesh(jax.devices()[:1]))
        >>> free is None or (isinstance(free, int) and free > 0)
        True
    """
    mesh = check_mesh(mesh)
    devices = [jax.devices()[0]] if mesh is None else list(mesh.devices.flat)
    local = [d for d in devices if d.process_index == jax.process_index()] or devices
    caps = []
    for d in local:
        try:
            stats = d.memory_stats()
        except Exception:  # pragma: no cover - backend without memory stats
            stats = None
        if stats and "bytes_limit" in stats:
            caps.append(int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))
    if caps:
        return min(caps)
    host = _host_available_bytes()
    if host is None:
        return None
    cpus = sum(1 for d in local if d.platform == "cpu")
    return host // max(cpus, 1)


def chunk_plan(
    n: int, per_item: int, fixed: int, cap: int | None, shards: int = 1, *, what: str = "element"
) -> tuple[int, int]:
    """``(chunk_size, num_chunks)`` for ``n`` elements by the module's chunking rule.

    Args:
        n: elements along the batch axis.
        per_item: bytes one element needs on a device.
        fixed: bytes every device needs besides (data, shared buffers).
        cap: bytes per device (``None``: unknown, one chunk).
        shards: devices along the batch axis; the chunk size is a multiple of it.
        what: name of one element for the error message.

    Raises:
        ValueError: a single element does not fit (``fixed + per_item > cap``).

    Examples:
        >>> chunk_plan(10, per_item=100, fixed=50, cap=450, shards=2)  # 4 fit per device
        (6, 2)
        >>> chunk_plan(10, per_item=100, fixed=50, cap=None)
        (10, 1)
    """
    for name, v in (("n", n), ("shards", shards)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    sizes: list[tuple[str, Any, bool]] = [("per_item", per_item, True), ("fixed", fixed, False)]
    if cap is not None:
        sizes.append(("cap", cap, True))
    for name, b, positive in sizes:
        number = not isinstance(b, bool) and isinstance(b, int | float | np.integer | np.floating)
        if not number or not math.isfinite(b) or b < 0 or (positive and b == 0):
            rng = "> 0" if positive else ">= 0"
            raise ValueError(f"{name} must be a finite number of bytes {rng}, got {b!r}")
    if cap is None or fixed + per_item * math.ceil(n / shards) <= cap:
        size = shards * math.ceil(n / shards)
        return size, 1
    k = (cap - fixed) // per_item
    if k < 1:
        raise ValueError(
            f"one {what} needs about {(fixed + per_item) / 2**30:.3g} GiB of device memory "
            f"({per_item} bytes plus {fixed} shared) but {cap / 2**30:.3g} GiB are available "
            "(memory_limit); use a smaller model or batch, or a larger memory_limit"
        )
    chunks = math.ceil(n / (k * shards))
    return shards * math.ceil(n / (chunks * shards)), chunks
