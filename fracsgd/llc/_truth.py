"""Known learning coefficients: deep linear networks (Aoyagi 2024) and reduced-rank regression
(Aoyagi & Watanabe 2005), used as ground truth for the estimator."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from fracsgd._checks import refuse_traced


def _check(widths: Sequence[int], rank: int) -> tuple[list[int], int]:
    refuse_traced(
        "fracsgd.llc's learning-coefficient formulas (integer arithmetic)",
        widths=widths,
        rank=rank,
    )
    if isinstance(widths, str | bytes):
        raise ValueError(f"widths must be a sequence of positive integers, got {widths!r}")
    try:
        ws = [int(w) for w in widths]
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"widths must be a sequence of positive integers, got {widths!r}") from err
    if (
        len(ws) < 2
        or any(w <= 0 for w in ws)
        or any(isinstance(w, bool) or int(w) != w for w in widths)  # True is no width
    ):
        raise ValueError(f"widths must be (input, hidden..., output), all > 0; got {widths!r}")
    msg = f"rank must be an integer in [0, min(widths) = {min(ws)}], got {rank!r}"
    try:
        r = int(rank)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(msg) from err
    if isinstance(rank, bool | str | bytes) or r != rank or not 0 <= r <= min(ws):
        raise ValueError(msg)
    return ws, int(rank)


def aoyagi_lambda(widths: Sequence[int], rank: int) -> float:
    """The learning coefficient λ of a deep linear network at a realizable teacher.

    Model ``y = W_L ⋯ W_1 x`` with ``W_s ∈ R^{H_{s+1} × H_s}`` and squared loss; the teacher's
    end-to-end matrix has rank ``r``. Following Aoyagi (2024) (theory.md Appendix A):
    ``M_s = H_s − r``; sort the ``M_s`` ascending and take the smallest prefix ``𝓜`` (of size
    ``ℓ + 1``) with (a) ``max_𝓜 M < min_{∉𝓜} M``, (b) ``Σ_𝓜 M ≥ ℓ · max_𝓜 M``,
    (c) ``Σ_𝓜 M < ℓ · min_{∉𝓜} M`` (complement conditions vacuous for the full set); with
    ``S = Σ_𝓜 M``, ``M̄ = ⌈S/ℓ⌉``, ``a = S − (M̄ − 1)ℓ``::

        λ = (−r² + r(H_1 + H_{L+1}))/2 + a(ℓ − a)/(4ℓ) − ℓ(ℓ − 1)/4 · (S/ℓ)² + ½ Σ_{i<j∈𝓜} M_i M_j

    A single layer gives the regular ``λ = H_1 H_2 / 2``.

    This is the *global* coefficient, set by the most singular true parameters. The local one,
    ``λ(w*)`` at a given true parameter (what :func:`fracsgd.llc.estimate` targets), can be
    larger (never smaller). Where ``K(w) = |W_L ⋯ W_1 − T|²`` grows quadratically across the true
    set — the rank ``ρ`` of the differential of ``(W_1, …, W_L) ↦ W_L ⋯ W_1`` equals the set's
    codimension there — ``λ(w*) = ρ/2``. (A smooth set alone is not enough: ``K = x⁴`` has
    ``λ = 1/4`` on its smooth zero set.) At the teacher factors of
    :func:`fracsgd.data.deep_linear_teacher` (rows ``≥ r`` of ``W_1`` zero, the rest generic)
    ``ρ`` equals the codimension, measured by projecting random nearby points onto the true set
    and counting the dimensions their displacements span: ``λ(w*)`` is 30, 10 and 6.5 for
    ``((10, 5, 10), 2)``, ``((6, 4, 3, 5), 1)`` and ``((4, 3, 3, 4), 1)`` against 29, 8 and 5.5
    here, and 6 against 4 for ``((4, 3, 3, 4), 0)`` (``W_1 = 0``). With ``γ = 1`` and
    ``nβ = n / log n`` the tests' SGLD estimates at those points read −3…−9 % of this function's
    value (``tests/llc/test_llc.py``, ``DLN_CASES``), the rank-0 teacher −15 %; at
    ``nβ = 10⁴`` (noise-free teacher, ``γ = 1`` or 100) it read 5.3–5.4. Those estimates are
    not local to the teacher point: at ``γ = 1`` the chains range ``LLCResult.distance`` ≈ 1.8
    from it after 4 000 draws and 3.4 after 40 000 (λ̂ 3.3 and 3.4 for rank 0, whose teacher
    point has norm 2.7; 1.8 for rank 1, norm 3.0), along the flat directions of the true set
    towards its more singular points. Stronger localization (``γ = 10``, 30: distance 1.5, 0.9)
    read lower still (2.9, 3.1): the teacher's small curvatures ``a`` make ``nβ a`` not large
    against ``γ`` at ``nβ = 1 086``, and the localization then shrinks λ̂. So the tests'
    agreement with this function is pre-asymptotic, not evidence of locality. ``tests/llc``
    checks locality itself on ``(x² + y²) z²``: its global coefficient is 1/2, its local one 1
    on its zero line and 1/2 on its zero plane.

    Args:
        widths: ``(H_1, …, H_{L+1})`` — input, hidden widths, output.
        rank: rank ``r`` of the teacher's product, ``0 ≤ r ≤ min(widths)``.

    Returns:
        λ as a float (exact integer arithmetic on the host; traced widths or rank, under
        ``jit``/``vmap``, are refused by name).

    References:
        M. Aoyagi, "Consideration on the learning efficiency of multiple-layered neural networks
        with linear units", Neural Networks 172 (2024). M. Aoyagi, S. Watanabe, "Stochastic
        complexities of reduced rank regression in Bayesian estimation", Neural Networks 18 (2005).

    Examples:
        >>> aoyagi_lambda((10, 5, 10), rank=2)
        29.0
        >>> aoyagi_lambda((3, 4), rank=1)  # one layer: d/2
        6.0
    """
    ws, r = _check(widths, rank)
    if len(ws) == 2:
        return ws[0] * ws[1] / 2.0
    m_sorted = sorted(h - r for h in ws)
    chosen: list[int] | None = None
    for size in range(1, len(m_sorted) + 1):
        sub, rest = m_sorted[:size], m_sorted[size:]
        ell = size - 1
        total = sum(sub)
        if rest and not max(sub) < min(rest):
            continue
        if not total >= ell * max(sub):
            continue
        if rest and not total < ell * min(rest):
            continue
        chosen = sub
        break
    # the full set always satisfies (a)-(c); a single element never satisfies (c) (S < 0)
    assert chosen is not None and len(chosen) >= 2
    ell = len(chosen) - 1
    s = sum(chosen)
    base = (-(r**2) + r * (ws[0] + ws[-1])) / 2.0
    m_bar = math.ceil(s / ell)
    a = s - (m_bar - 1) * ell
    pairs = sum(mi * mj for mi, mj in itertools.combinations(chosen, 2))
    lam = base + a * (ell - a) / (4 * ell) - ell * (ell - 1) / 4 * (s / ell) ** 2 + pairs / 2
    return float(lam)


def reduced_rank_lambda(m: int, h: int, n: int) -> float:
    """Learning coefficient of reduced-rank regression ``x ∈ R^M → R^H → R^N`` at the zero
    teacher (Aoyagi & Watanabe 2005): ``MH/2`` if ``M+H < N``; ``HN/2`` if ``N+H < M``; ``MN/2``
    if ``M+N < H``; else ``(2MN + 2HN + 2MH − M² − N² − H²)/8``, plus ``1/8`` when ``M+H+N``
    is odd.

    Source: the main theorem of M. Aoyagi, S. Watanabe, "Stochastic complexities of reduced
    rank regression in Bayesian estimation", Neural Networks 18 (2005), at true rank ``r = 0``
    (theory.md Appendix A, "Checks"). It is :func:`aoyagi_lambda` for two layers at rank 0.

    Args:
        m: input width ``M ≥ 1``.
        h: hidden width ``H ≥ 1`` (the rank bound of the product).
        n: output width ``N ≥ 1``.

    Returns:
        λ as a float.

    Raises:
        ValueError: if a width is not an integer ``≥ 1``, or is traced.

    Examples:
        >>> reduced_rank_lambda(2, 3, 4)  # (16 + 24 + 12 − 4 − 16 − 9)/8 + 1/8
        3.0
        >>> reduced_rank_lambda(1, 1, 1)  # y = b a x: K = (ab)² near 0, λ = 1/2
        0.5
        >>> reduced_rank_lambda(2, 1, 5), aoyagi_lambda((2, 1, 5), rank=0)  # M + H < N: MH/2
        (1.0, 1.0)
    """
    refuse_traced("fracsgd.llc.reduced_rank_lambda (integer arithmetic)", m=m, h=h, n=n)
    for name, v in (("m", m), ("h", h), ("n", n)):
        try:
            ok = not isinstance(v, bool | str | bytes) and int(v) == v and int(v) >= 1
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be an integer >= 1 (a layer width), got {v!r}")
    m, h, n = int(m), int(h), int(n)
    if m + h < n:
        return m * h / 2
    if n + h < m:
        return h * n / 2
    if m + n < h:
        return m * n / 2
    lam = (2 * m * n + 2 * h * n + 2 * m * h - m * m - n * n - h * h) / 8
    return lam + (1 / 8 if (m + h + n) % 2 else 0.0)
