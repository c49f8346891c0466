"""The time-fractional Fokker–Planck equation of SGD (theory.md §4): L1 Caputo time stepping
on graded meshes, Scharfetter–Gummel finite volumes, stationary states by null-space solves."""

from fracsgd.ffpe._caputo import (
    L1,
    SOE,
    Direct,
    L21Sigma,
    graded_mesh,
    l1_weights,
    l21sigma_weights,
    soe_nodes,
    soe_weights,
)
from fracsgd.ffpe._mittag import mittag_leffler
from fracsgd.ffpe._particles import Particles, ctrw
from fracsgd.ffpe._solve import (
    BAD_PARAMETER,
    NEGATIVE,
    NONFINITE,
    SUCCESS,
    Problem,
    Solution,
    solve,
    stationary,
    tridiagonal_shifted_solve,
)
from fracsgd.ffpe._space import Grid1D, bernoulli, sg_tridiagonal
from fracsgd.ffpe._space2d import (
    SG2D,
    CGInfo,
    Grid2D,
    apply2d,
    cg_solve2d,
    sg_operator2d,
    shifted_solve2d,
)

__all__ = [
    "BAD_PARAMETER",
    "L1",
    "NEGATIVE",
    "NONFINITE",
    "SG2D",
    "SOE",
    "SUCCESS",
    "CGInfo",
    "Direct",
    "Grid1D",
    "Grid2D",
    "L21Sigma",
    "Particles",
    "Problem",
    "Solution",
    "apply2d",
    "bernoulli",
    "cg_solve2d",
    "ctrw",
    "graded_mesh",
    "l1_weights",
    "l21sigma_weights",
    "mittag_leffler",
    "sg_operator2d",
    "sg_tridiagonal",
    "shifted_solve2d",
    "soe_nodes",
    "soe_weights",
    "solve",
    "stationary",
    "tridiagonal_shifted_solve",
]
