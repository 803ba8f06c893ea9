"""Reference kernels (NumPy) of the heat example. A Cython or GPU version keeps these signatures.

The plate is the unit square, sampled on ``n x n`` interior nodes with spacing ``h = 1 / (n + 1)``;
the border nodes are held at temperature 0 (cold walls). Conductivities live on the nodes, border
included (shape ``(n + 2, n + 2)``); heat flows between neighbours through faces whose conductivity
is the harmonic mean of the two nodes. The scheme is explicit (FTCS) in conservative flux form, so the
heat that leaves through the walls is known exactly and ``heat(0) - heat(t) - outflow(t)`` is zero up
to rounding.
"""

from __future__ import annotations

import numpy as np

__all__ = ["face_conductivities", "simulate", "stable_dt"]


def face_conductivities(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Conductivities of the faces between neighbouring nodes of ``k`` (``(n + 2, n + 2)``).

    Returns ``kx`` of shape ``(n + 1, n)`` (faces between rows ``i`` and ``i + 1``, interior columns)
    and ``ky`` of shape ``(n, n + 1)``; each is the harmonic mean of the two nodes it joins.

    >>> kx, ky = face_conductivities(np.ones((5, 5)))
    >>> kx.shape, ky.shape, float(kx.min()), float(ky.max())
    ((4, 3), (3, 4), 1.0, 1.0)
    """
    k = np.asarray(k, dtype=np.float64)
    a, b = k[:-1, 1:-1], k[1:, 1:-1]
    kx = 2.0 * a * b / (a + b)
    a, b = k[1:-1, :-1], k[1:-1, 1:]
    ky = 2.0 * a * b / (a + b)
    return kx, ky


def stable_dt(h: float, alpha: float, k_max: float, t_end: float, safety: float) -> tuple[float, int]:
    """The time step and step count reaching ``t_end`` with ``dt <= safety * h**2 / (4 * alpha * k_max)``.

    FTCS is stable (and keeps the maximum principle) when ``dt <= h**2 / (4 * alpha * k_max)``;
    the step is shortened a little so that a whole number of steps lands on ``t_end``.

    >>> dt, steps = stable_dt(0.1, 1.0, 1.0, 0.1, 0.9)
    >>> steps, round(dt, 6)
    (45, 0.002222)
    """
    limit = safety * h * h / (4.0 * alpha * k_max)
    steps = max(1, int(np.ceil(t_end / limit - 1e-9)))
    return t_end / steps, steps


def simulate(u0: np.ndarray, k: np.ndarray, alpha: float, dt: float, h: float, steps: int, every: int) -> dict[str, np.ndarray]:
    """Advance ``u0`` (``(n, n)`` interior temperatures) by ``steps`` FTCS steps of ``dt``.

    ``k`` is the node conductivity map (``(n + 2, n + 2)``), ``alpha`` the diffusivity that scales
    it. Every ``every`` steps (and at the last one) it samples the total heat ``h**2 * sum(u)``, the
    peak temperature and the heat that has left through the walls so far.

    Returns ``field`` (the final ``(n, n)`` temperatures), ``step`` (the sampled step numbers),
    ``heat``, ``peak`` and ``outflow`` (arrays, one value per sample, sample 0 is the start).
    """
    n = u0.shape[0]
    u = np.zeros((n + 2, n + 2))
    u[1:-1, 1:-1] = u0
    inner = u[1:-1, 1:-1]
    kx, ky = face_conductivities(k)
    r = alpha * dt / (h * h)
    kx, ky = kx * r, ky * r  # fold the step factor into the face conductivities once
    # Heat leaving through the walls in one step is linear in the temperatures next to them:
    # sum(wall * u). Summing u over the steps (one array add) and weighting at each sample is
    # cheaper than four small sums per step, and exact.
    wall = np.zeros((n, n))
    wall[0, :] += kx[0]
    wall[-1, :] += kx[-1]
    wall[:, 0] += ky[:, 0]
    wall[:, -1] += ky[:, -1]
    seen = np.zeros((n, n))  # sum over the steps done of the temperatures before each step
    fx = np.empty((n + 1, n))
    fy = np.empty((n, n + 1))
    div = np.empty((n, n))
    tmp = np.empty((n, n))
    area = h * h
    marks = sorted(set(range(0, steps, max(1, every))) | {steps})
    step_s, heat, peak, outflow = [], [], [], []
    done = 0
    for mark in marks:
        for _ in range(mark - done):
            np.subtract(u[1:, 1:-1], u[:-1, 1:-1], out=fx)  # differences across x faces
            np.multiply(fx, kx, out=fx)                      # fluxes (already times alpha dt / h^2)
            np.subtract(u[1:-1, 1:], u[1:-1, :-1], out=fy)
            np.multiply(fy, ky, out=fy)
            np.add(seen, inner, out=seen)
            np.subtract(fx[1:], fx[:-1], out=div)
            np.subtract(fy[:, 1:], fy[:, :-1], out=tmp)
            np.add(div, tmp, out=div)
            np.add(inner, div, out=inner)
        done = mark
        step_s.append(mark)
        heat.append(area * float(inner.sum()))
        peak.append(float(inner.max()))
        outflow.append(area * float((wall * seen).sum()))
    return {"field": inner.copy(), "step": np.asarray(step_s), "heat": np.asarray(heat),
            "peak": np.asarray(peak), "outflow": np.asarray(outflow)}
