"""Strict test environment (as diffrax's ``test/conftest.py``): rank promotion raises, warnings
are errors (pyproject), and ``x64`` is a fixture for tests that assert float64 accuracy.

Compiled programs are released after every test module: each XLA CPU executable holds a few
memory mappings, and the whole suite in one process compiles enough of them to pass Linux's
default ``vm.max_map_count`` (65 530). Past it LLVM cannot map new code and the process
segfaults inside ``backend_compile_and_load`` (seen at 98 % of the suite, in the last
doctests); measured at 38 000 mappings by 62 % of the suite without the release."""

import gc

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Enable float64 for one test."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's caches of compiled programs when a test module is done (see the module
    docstring); a module's own tests still share them (and the no-recompilation checks)."""
    yield
    jax.clear_caches()
    gc.collect()
