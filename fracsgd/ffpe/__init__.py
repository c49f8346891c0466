"""The time-fractional Fokker–Planck equation of SGD (theory.md §4): L1 Caputo time stepping
on graded meshes, Scharfetter–Gummel finite volumes, stationary states by null-space solves."""

from fracsgd.ffpe._caputo import graded_mesh, l1_weights
from fracsgd.ffpe._solve import NONFINITE, SUCCESS, Problem, Solution, solve, stationary
from fracsgd.ffpe._space import Grid1D, bernoulli, sg_tridiagonal

__all__ = [
    "NONFINITE",
    "SUCCESS",
    "Grid1D",
    "Problem",
    "Solution",
    "bernoulli",
    "graded_mesh",
    "l1_weights",
    "sg_tridiagonal",
    "solve",
    "stationary",
]
