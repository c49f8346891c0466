"""The time-fractional Fokker–Planck equation of SGD (theory.md §4): L1 Caputo time stepping
on graded meshes, Scharfetter–Gummel finite volumes, stationary states by null-space solves."""

from fracsgd.ffpe._caputo import graded_mesh, l1_weights
from fracsgd.ffpe._solve import NONFINITE, SUCCESS, Problem, Solution, solve, stationary
from fracsgd.ffpe._space import Grid1D, bernoulli, sg_tridiagonal
from fracsgd.ffpe._space2d import CGInfo, Grid2D, apply2d, cg_solve2d, shifted_solve2d

__all__ = [
    "NONFINITE",
    "SUCCESS",
    "CGInfo",
    "Grid1D",
    "Grid2D",
    "Problem",
    "Solution",
    "apply2d",
    "bernoulli",
    "cg_solve2d",
    "graded_mesh",
    "l1_weights",
    "sg_tridiagonal",
    "shifted_solve2d",
    "solve",
    "stationary",
]
