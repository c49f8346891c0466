"""Drivers run on the host: under jit/vmap they say so by name, before anything deep fails."""

import jax
import jax.numpy as jnp
import pytest

import fracsgd as fs

KEY = jax.random.key(0)
DATA = jnp.zeros((100, 1))


def _loss(w, b):
    return jnp.sum(w**2) + 0.0 * jnp.sum(b)


def _estimate(params, step_size=1e-3):
    return fs.llc.estimate(
        KEY,
        _loss,
        params,
        DATA,
        num_chains=2,
        num_draws=10,
        step_size=step_size,
        localization=1.0,
        batch_size=10,
    ).llc_mean


@pytest.mark.parametrize(
    ("call", "where", "what"),
    [
        (lambda: jax.jit(_estimate)(jnp.zeros(2)), "fracsgd.llc.estimate", "params"),
        (
            lambda: jax.vmap(lambda e: _estimate(jnp.zeros(2), e))(jnp.array([1e-3, 2e-3])),
            "fracsgd.llc.estimate",
            "step_size",
        ),
        (
            # its grid's length depends on t's values (fit_exponent runs under jit, on the host)
            lambda: jax.jit(lambda r: fs.diffusion.local_slopes(jnp.arange(1.0, 101.0), r)[1])(
                jnp.arange(1.0, 101.0)
            ),
            "fracsgd.diffusion fit",
            "",
        ),
        (
            lambda: jax.jit(lambda r: fs.diffusion.log_resample(jnp.arange(1.0, 9.0), r)[1])(
                jnp.ones(8)
            ),
            "fracsgd.diffusion.log_resample",
            "t",
        ),
        (
            lambda: jax.jit(fs.diffusion.displacement_from_checkpoints)(
                {"w": jnp.ones((3, 2))}, {"w": jnp.zeros(2)}
            ),
            "fracsgd.diffusion.displacement_from_checkpoints",
            "checkpoints. Under jit/vmap, vmap fracsgd.train.displacement",
        ),
        (
            lambda: jax.jit(fs.diffusion.tempered_log_masses)(jnp.ones(3), 2.0),
            "fracsgd.diffusion.tempered_log_masses",
            "sgd_masses",
        ),
        (
            lambda: jax.jit(lambda v: fs.llc.time_average([1, 2, 3], v, 1))(jnp.ones(3)),
            "fracsgd.llc.time_average",
            "values",
        ),
        (
            lambda: jax.jit(lambda r: fs.llc.aoyagi_lambda((3, 2, 3), r))(1),
            "learning-coefficient formulas",
            "rank",
        ),
        (
            lambda: jax.jit(lambda b: fs.llc.resolve_nbeta(b, 100, 10))(5.0),
            "fracsgd.llc.resolve_nbeta",
            "nbeta",
        ),
        (
            lambda: jax.jit(
                lambda x: (
                    fs.data.make_dataset(
                        x,
                        jnp.zeros(4, jnp.int32),
                        x,
                        jnp.zeros(4, jnp.int32),
                        num_classes=2,
                        name="t",
                        source="t",
                    ).x_train
                )
            )(jnp.ones((4, 2))),
            "fracsgd.data.make_dataset",
            "x_train",
        ),
        (
            lambda: jax.jit(lambda x: fs.parallel.shard_leading(x, None))(jnp.ones(2)),
            "fracsgd.parallel.shard_leading",
            "tree",
        ),
        (
            lambda: jax.jit(lambda x: fs.parallel.replicate(x, None))(jnp.ones(2)),
            "fracsgd.parallel.replicate",
            "tree",
        ),
        (
            lambda: jax.jit(fs.parallel.to_host)(jnp.ones(2)),
            "fracsgd.parallel.to_host",
            "tree",
        ),
        (
            lambda: jax.vmap(
                lambda k: (
                    fs.train.run(
                        k,
                        fs.models.mlp((1, 2, 2)),
                        fs.data.load("moons", n=40),
                        fs.train.TrainConfig(steps=2, batch_size=4),
                        progress=False,
                    ).displacement
                )
            )(jax.random.split(KEY, 2)),
            "fracsgd.train.run",
            "key",
        ),
        # the chain diagnostics are NumPy on the host: a traced trace used to read "traces must
        # be an array of numbers" with the tracer's __array__ error (found by jit-ing them)
        (
            lambda: jax.jit(fs.sampling.split_rhat)(jnp.ones((2, 8))),
            "fracsgd.sampling.split_rhat",
            "traces",
        ),
        (
            lambda: jax.vmap(fs.sampling.effective_sample_size)(jnp.ones((3, 2, 8))),
            "fracsgd.sampling.effective_sample_size",
            "traces",
        ),
    ],
)
def test_drivers_refuse_tracers_by_name(call, where, what):
    with pytest.raises(ValueError, match=f"{where}.*outside jit/vmap/grad, got a traced {what}"):
        call()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda t: fs.diffusion.ctrw(KEY, 4, t, 0.5), "times"),
        (lambda t: fs.ffpe.graded_mesh(t, 4), "t_final"),
        # the SOE nodes are a host-side plan whose length t_min, t_max and tol set: a traced one
        # was a TracerBoolConversionError (found by jit-ing soe_nodes and SOE.num_terms)
        (lambda t: fs.ffpe.soe_nodes(t, 2.0, 1e-6), "t_min"),
        (lambda t: fs.ffpe.soe_nodes(1e-3, t, 1e-6), "t_max"),
        (lambda t: fs.ffpe.SOE(tol=1e-8).num_terms(1e-3, t), "t_max"),
        # the gasket's generation sets its graph (built on the host and cached): a traced one
        # was "unhashable type: 'DynamicJaxprTracer'" from the cache
        (lambda g: fs.diffusion.sierpinski_gasket(g).degree, "generation"),
        (lambda g: fs.diffusion.gasket_walk(KEY, 2, 3, g), "generation"),
        (
            lambda t: (
                fs.ffpe.solve(
                    fs.ffpe.Problem(alpha=0.5),
                    fs.ffpe.Grid1D(lo=-1.0, hi=1.0, cells=8),
                    jnp.ones(8),
                    t_final=t,
                    num_steps=4,
                ).p
            ),
            "t_final",
        ),
    ],
)
def test_arguments_that_set_shapes_or_host_plans_must_be_concrete(call, name):
    with pytest.raises(ValueError, match=f"{name} must be concrete under jit/vmap"):
        arg = {"times": jnp.array([1.0, 2.0]), "generation": 3}.get(name, 1.0)
        jax.jit(call)(arg)


@pytest.mark.parametrize(
    ("call", "name", "what"),
    [
        (lambda v: fs.data.load("moons", n=v), "n", "an integer >= 2"),
        (lambda v: fs.data.load("moons", seed=v), "seed", "an integer >= 0"),
        (lambda v: fs.data.moons(n=20, noise=v), "noise", "a finite number >= 0"),
        (lambda v: fs.diffusion.ctrw(KEY, v, [1.0, 2.0], 0.5).t, "walkers", "a positive integer"),
    ],
)
def test_checked_numbers_given_traced_say_so_by_name(call, name, what):
    """A host-checked integer or number that is traced names itself and says it must be
    concrete, instead of 'got JitTracer(~int32[])'."""
    with pytest.raises(ValueError, match=rf"^{name}.* must be concrete under jit/vmap") as err:
        jax.jit(call)(3)
    assert what in str(err.value)


def test_progress_must_be_a_bool_and_memory_errors_give_readable_sizes():
    from fracsgd._progress import Progress

    with pytest.raises(ValueError, match="progress must be True or False"):
        Progress(10, "x", enabled="no")
    data = fs.data.load("moons", n=100)
    cfg = fs.train.TrainConfig(steps=4, batch_size=10)
    with pytest.raises(ValueError, match=r"about [0-9.]+ KiB .* but 1 bytes"):
        fs.train.run(KEY, fs.models.mlp((2, 4, 2)), data, cfg, memory_limit=1, progress=False)


def test_tree_digest_sees_contents_names_and_nothing_else(tmp_path):
    """The code digest behind stored results' fingerprints: a changed byte, a renamed or an added
    source file changes it; other files and the listing order do not."""
    from pathlib import Path

    from fracsgd._io import code_digest, software, tree_digest

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "b.py").write_text("y = 2\n")
    (tmp_path / "a.py").write_text("x = 1\n")
    base = tree_digest(tmp_path)
    assert len(base) == 64 and base == tree_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("not code")
    (tmp_path / "pkg" / "c.pyc").write_bytes(b"\0")
    assert tree_digest(tmp_path) == base
    (tmp_path / "a.py").write_text("x = 1 \n")
    assert tree_digest(tmp_path) != base
    (tmp_path / "a.py").write_text("x = 1\n")
    assert tree_digest(tmp_path) == base
    (tmp_path / "pkg" / "b.py").rename(tmp_path / "pkg" / "b2.py")
    assert tree_digest(tmp_path) != base
    (tmp_path / "pkg" / "b2.py").rename(tmp_path / "pkg" / "b.py")
    (tmp_path / "pkg" / "__init__.py").write_text("")
    assert tree_digest(tmp_path) != base
    # the two files' bytes moved across the boundary between them: another digest
    (tmp_path / "pkg" / "__init__.py").unlink()
    (tmp_path / "a.py").write_text("x = 1\ny")
    (tmp_path / "pkg" / "b.py").write_text(" = 2\n")
    assert tree_digest(tmp_path) != base

    import fracsgd

    assert code_digest() == tree_digest(Path(fracsgd.__file__).resolve().parent)
    sw = software()
    assert sw["code"] == code_digest() and sw["fracsgd"] == fracsgd.__version__
