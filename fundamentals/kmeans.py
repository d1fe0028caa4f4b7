"""k-means in vectorised NumPy: k-means++ init, Lloyd iterations, empty-cluster relocation, tolerance stop.

Each iteration is two dense steps: assign every point to its nearest center using
||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2 (one (n, k) matrix product), then move each center to the mean of its
points (np.add.at / bincount, no Python loop over points). Stop when the centers move less than
tol * mean feature variance (sklearn's definition) or after max_iter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from infra.steps import OneLineParser


@dataclass
class KMeansResult:
    centers: np.ndarray  # (k, d)
    labels: np.ndarray  # (n,)
    inertia: float  # sum of squared distances to the assigned center
    n_iter: int
    relocated: int  # empty clusters re-seeded during the run


def squared_distances(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """(n, d), (k, d) -> (n, k) squared Euclidean distances, clipped at 0 against rounding."""
    d2 = (X * X).sum(1)[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]  # (n, k)
    return np.maximum(d2, 0.0)


def kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++: first center uniform, each next one sampled with probability proportional to D(x)^2."""
    n = X.shape[0]
    if k > n:
        raise ValueError(f"k={k} is larger than the number of points n={n}; lower k or pass more data")
    centers = np.empty((k, X.shape[1]), dtype=X.dtype)
    centers[0] = X[rng.integers(n)]
    closest = squared_distances(X, centers[:1])[:, 0]  # (n,) D(x)^2 to the nearest chosen center
    for j in range(1, k):
        total = closest.sum()
        idx = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centers[j] = X[idx]
        closest = np.minimum(closest, squared_distances(X, centers[j : j + 1])[:, 0])
    return centers


def kmeans(
    X: np.ndarray,
    k: int,
    init: np.ndarray | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
) -> KMeansResult:
    """Lloyd's algorithm. init: (k, d) starting centers (default k-means++ with `seed`)."""
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.default_rng(seed)
    centers = kmeans_plusplus(X, k, rng) if init is None else np.array(init, dtype=np.float64)
    threshold = tol * X.var(axis=0).mean()  # sklearn: tol is relative to the data's variance
    relocated, n_iter = 0, 0
    for it in range(1, max_iter + 1):
        n_iter = it
        labels = squared_distances(X, centers).argmin(1)  # (n,)
        counts = np.bincount(labels, minlength=k)  # (k,)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, X)  # (k, d) per-cluster sums, unbuffered scatter-add
        new = sums / np.maximum(counts, 1)[:, None]
        empty = np.flatnonzero(counts == 0)
        if empty.size:  # re-seed each empty cluster at the point worst served by its current center
            d2 = squared_distances(X, centers)[np.arange(len(X)), labels]
            far = np.argsort(d2)[::-1][: empty.size]
            new[empty] = X[far]
            relocated += empty.size
        shift = ((new - centers) ** 2).sum()
        centers = new
        if shift <= threshold and not empty.size:
            break
    d2 = squared_distances(X, centers)
    labels = d2.argmin(1)
    inertia = float(d2[np.arange(len(X)), labels].sum())
    return KMeansResult(centers, labels, inertia, n_iter, relocated)


def kmeans_loop(X: np.ndarray, init: np.ndarray, n_iter: int) -> tuple[np.ndarray, float]:
    """The same Lloyd iterations with Python loops over points and centers: the version to speed up."""
    points = [list(map(float, x)) for x in X]
    centers = [list(map(float, c)) for c in init]
    for _ in range(n_iter):
        sums = [[0.0] * len(points[0]) for _ in centers]
        counts = [0] * len(centers)
        for p in points:
            best = min(
                range(len(centers)),
                key=lambda j: sum((a - b) ** 2 for a, b in zip(p, centers[j], strict=True)),
            )
            counts[best] += 1
            sums[best] = [s + a for s, a in zip(sums[best], p, strict=True)]
        centers = [
            [s / c for s in sm] if c else centers[j]
            for j, (sm, c) in enumerate(zip(sums, counts, strict=True))
        ]
    inertia = sum(min(sum((a - b) ** 2 for a, b in zip(p, c, strict=True)) for c in centers) for p in points)
    return np.array(centers), inertia


def make_blobs(n: int, k: int, d: int, seed: int = 0) -> np.ndarray:
    """n points around k Gaussian centers in d dimensions, unequal spreads."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(-10, 10, size=(k, d))
    which = rng.integers(k, size=n)
    return truth[which] + rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, size=k)[which, None]


def compare_with_sklearn(X: np.ndarray, k: int, seed: int = 0) -> dict[str, float]:
    """Same k-means++ init into both; returns inertias, iterations and wall times."""
    from sklearn.cluster import KMeans

    init = kmeans_plusplus(X, k, np.random.default_rng(seed))
    t0 = time.perf_counter()
    ours = kmeans(X, k, init=init, seed=seed)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = KMeans(n_clusters=k, init=init, n_init=1, algorithm="lloyd", tol=1e-4, random_state=seed).fit(X)
    t_ref = time.perf_counter() - t0
    return {
        "inertia": ours.inertia,
        "sk_inertia": float(ref.inertia_),
        "n_iter": ours.n_iter,
        "sk_n_iter": int(ref.n_iter_),
        "t_ours": t_ours,
        "t_sk": t_ref,
    }


def demo(argv: list[str]) -> int:
    parser = OneLineParser(prog="mlsd fundamentals kmeans", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000, 100_000])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--loop-rows", type=int, default=2_000, help="rows for the pure-Python loop timing")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"k-means, k={args.k}, d={args.dim}, same k-means++ init for both (inertia, seconds)")
    for col in ("n", "ours", "sklearn", "rel diff", "iters ours/sk", "ours s", "sklearn s"):
        table.add_column(col, justify="right")
    for n in args.sizes:
        r = compare_with_sklearn(make_blobs(n, args.k, args.dim, args.seed), args.k, args.seed)
        table.add_row(
            f"{n:,}",
            f"{r['inertia']:.6g}",
            f"{r['sk_inertia']:.6g}",
            f"{abs(r['inertia'] - r['sk_inertia']) / r['sk_inertia']:.1e}",
            f"{r['n_iter']}/{r['sk_n_iter']}",
            f"{r['t_ours']:.3f}",
            f"{r['t_sk']:.3f}",
        )
    console = Console(width=110)
    console.print(table)

    X = make_blobs(args.loop_rows, args.k, args.dim, args.seed)
    init = kmeans_plusplus(X, args.k, np.random.default_rng(args.seed))
    n_iter = 10
    t0 = time.perf_counter()
    vec = kmeans(X, args.k, init=init, max_iter=n_iter, tol=0.0)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, loop_inertia = kmeans_loop(X, init, n_iter)
    t_loop = time.perf_counter() - t0
    speed = Table(
        title=f"{n_iter} Lloyd iterations on n={args.loop_rows:,}: Python loops vs vectorised NumPy"
    )
    for col in ("version", "seconds", "inertia"):
        speed.add_column(col, justify="right")
    speed.add_row("Python loops", f"{t_loop:.3f}", f"{loop_inertia:.6g}")
    speed.add_row("vectorised", f"{t_vec:.4f}", f"{vec.inertia:.6g}")
    speed.add_row("speed-up", f"{t_loop / t_vec:.0f}x", "")
    console.print(speed)
    return 0
