"""fracsgd's per-kind compiler options (``fracsgd._xla``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fracsgd import _xla


@pytest.fixture
def fresh_options():
    _xla.compiler_options.cache_clear()
    yield
    _xla.compiler_options.cache_clear()


def test_options_per_kind_on_cpu(fresh_options, monkeypatch):
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    if jax.default_backend() != "cpu":
        assert _xla.compiler_options("engine") is None
        return
    for kind in ("engine", "sampler"):
        opts = _xla.compiler_options(kind)
        accepted = {k: v for k, v in _xla.CPU_OPTIONS[kind].items() if _xla._accepted(k, v)}
        assert (opts or {}) == accepted
    # both kinds switch YNNPACK fusions off where this jaxlib knows the option (fracsgd/_xla.py)
    for kind in ("engine", "sampler"):
        if _xla._accepted("xla_cpu_experimental_ynn_fusion_type", ""):
            assert (_xla.compiler_options(kind) or {})["xla_cpu_experimental_ynn_fusion_type"] == ""


def test_a_user_flag_wins(fresh_options, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_prefer_vector_width=256")
    for kind in ("engine", "sampler"):
        assert "xla_cpu_prefer_vector_width" not in (_xla.compiler_options(kind) or {})


def test_unknown_kind_is_refused_before_compiling():
    with pytest.raises(ValueError, match="kind"):
        _xla.jit(lambda x: x, kind="fast")
    with pytest.raises(ValueError, match="kind"):
        _xla.compiler_options("fast")


def test_jit_with_options_computes_what_jax_jit_does():
    def f(x, n):
        return jnp.sum(jnp.sin(x) ** n) + jnp.sqrt(jnp.abs(x)).mean()

    x = jax.random.normal(jax.random.key(0), (1000,))
    for kind in ("engine", "sampler"):
        got = _xla.jit(f, kind=kind, static_argnums=1)(x, 3)
        np.testing.assert_allclose(got, jax.jit(f, static_argnums=1)(x, 3), rtol=1e-6)
