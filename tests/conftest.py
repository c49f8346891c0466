"""Strict test environment (as diffrax's ``test/conftest.py``): rank promotion raises, warnings
are errors (pyproject), and ``x64`` is a fixture for tests that assert float64 accuracy."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def x64():
    """Enable float64 for one test."""
    with jax.enable_x64(True):
        yield
