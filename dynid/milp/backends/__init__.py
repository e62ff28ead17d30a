"""Thin solver backends: each has ``NAME`` and ``solve(model, *, time_limit, threads, mip_gap,
mip_gap_abs, log, options) -> SolveResult`` (raw: :func:`dynid.milp.solve` makes the bound safe).
Imported lazily so a missing optional solver never breaks ``import dynid``."""
