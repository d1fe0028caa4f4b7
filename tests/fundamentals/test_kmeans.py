import numpy as np
import pytest
from sklearn.cluster import KMeans

from fundamentals import kmeans as km


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inertia_matches_sklearn_on_same_init(seed):
    X = km.make_blobs(3000, 6, 5, seed=seed)
    r = km.compare_with_sklearn(X, 6, seed=seed)
    assert r["inertia"] == pytest.approx(r["sk_inertia"], rel=0.01)


def test_centers_match_sklearn_on_same_init():
    X = km.make_blobs(2000, 4, 3, seed=3)
    init = km.kmeans_plusplus(X, 4, np.random.default_rng(3))
    ours = km.kmeans(X, 4, init=init)
    ref = KMeans(n_clusters=4, init=init, n_init=1, algorithm="lloyd").fit(X)
    np.testing.assert_allclose(ours.centers, ref.cluster_centers_, atol=1e-6)
    assert (ours.labels == ref.labels_).all()


def test_inertia_is_sum_of_squared_distances():
    X = km.make_blobs(500, 3, 2, seed=0)
    r = km.kmeans(X, 3, seed=0)
    assert r.inertia == pytest.approx(((X - r.centers[r.labels]) ** 2).sum())


def test_kmeans_plusplus_beats_uniform_init():
    X = km.make_blobs(2000, 8, 2, seed=4)

    def init_cost(C):
        return km.squared_distances(X, C).min(1).sum()

    pp = [init_cost(km.kmeans_plusplus(X, 8, np.random.default_rng(s))) for s in range(10)]
    uniform = [init_cost(X[np.random.default_rng(s).choice(2000, 8, replace=False)]) for s in range(10)]
    assert np.mean(pp) < 0.7 * np.mean(uniform)


def test_empty_cluster_is_relocated_not_nan():
    X = km.make_blobs(300, 3, 2, seed=0)
    init = np.array([X[0], X[1], [1e6, 1e6]])  # the third center attracts no point
    r = km.kmeans(X, 3, init=init)
    assert r.relocated >= 1
    assert np.isfinite(r.centers).all()
    assert len(np.unique(r.labels)) == 3


def test_tolerance_stops_early_and_max_iter_caps():
    X = km.make_blobs(2000, 4, 2, seed=0)
    assert km.kmeans(X, 4, tol=1e-1, seed=0).n_iter <= km.kmeans(X, 4, tol=0.0, seed=0).n_iter
    assert km.kmeans(X, 4, max_iter=1, tol=0.0, seed=0).n_iter == 1


def test_loop_version_gives_the_same_inertia():
    X = km.make_blobs(200, 3, 2, seed=5)
    init = km.kmeans_plusplus(X, 3, np.random.default_rng(5))
    _, loop_inertia = km.kmeans_loop(X, init, 5)
    assert loop_inertia == pytest.approx(km.kmeans(X, 3, init=init, max_iter=5, tol=0.0).inertia, rel=1e-9)


def test_k_larger_than_n_says_what_to_do():
    with pytest.raises(ValueError, match="lower k"):
        km.kmeans(np.zeros((3, 2)), 5)


def test_demo_prints_tables(capsys):
    assert km.demo(["--sizes", "500", "--k", "3", "--dim", "2", "--loop-rows", "200"]) == 0
    out = capsys.readouterr().out
    assert "sklearn" in out and "speed-up" in out
