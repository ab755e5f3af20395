"""SplitOut's outlier verdict on one gradient at a time: scikit-learn's
LocalOutlierFactor(novelty=True), without its per-call cost.

SplitOut classifies every first-layer gradient of a run against its honest examples
(ten or more). `LocalOutlierFactor.predict` on one row spends nearly all of its time checking
the input and dispatching a nearest-neighbour search, not on the arithmetic, which is a
few thousand multiply-adds. `NoveltyLOF` fits scikit-learn's model once, takes from it
(through the public `kneighbors`) what scoring a new row needs, the examples' k-distances
and local reachability densities, and scores rows with numpy.

Its verdicts are scikit-learn's, not an approximation of them. A new row's score,
-(mean reach distance + 1e-10) * (mean density of its k neighbours), depends on the row
only through its distances to the examples, and falls as any of them grows. scikit-learn
computes those distances in a different order of operations, so each may differ from
numpy's in its last bits, but by no more than a bound on rounding error (`slack`, from
the dimension). The verdict is taken here only where every distance anywhere in its
bound gives the same neighbours and the same sign of the score's margin over `offset_`;
otherwise, which takes a row on the threshold or a near-tie between the k-th and next
example, scikit-learn decides (`referrals` counts those rows).
"""
from __future__ import annotations

from typing import Any

import numpy as np

EPS = float(np.finfo(np.float64).eps)
# Added to the score's own rounding: the few operations after the distances, done in
# another order by scikit-learn, move it by a few EPS; this is ample.
SCORE_SLACK = 1e-12


def reachability_density(distances: np.ndarray, neighbours: np.ndarray, k_distance: np.ndarray) -> np.ndarray:
    """The local reachability density of rows whose k nearest examples are `neighbours`
    at `distances`, written as scikit-learn writes it (so that the examples' own values
    are scikit-learn's to the bit)."""
    reach = np.maximum(distances, k_distance[neighbours])
    return 1.0 / (np.mean(reach, axis=1) + 1e-10)


class NoveltyLOF:
    """LocalOutlierFactor(n_neighbors = n - 1, novelty = True) fitted to `examples` (n >= 2
    rows, float64), answering whether one new row is an outlier."""

    def __init__(self, examples: np.ndarray) -> None:
        # Imported here: scikit-learn pulls in rich, and the engine imports no UI library.
        from sklearn.neighbors import LocalOutlierFactor

        n, dim = examples.shape
        self.model: Any = LocalOutlierFactor(n_neighbors=max(1, n - 1), novelty=True).fit(examples)
        self.k = self.model.n_neighbors_
        self.examples = np.ascontiguousarray(examples, dtype=np.float64)
        distances, neighbours = self.model.kneighbors(n_neighbors=self.k)  # as fit() found them
        self.k_distance = distances[:, -1]
        self.density = reachability_density(distances, neighbours, self.k_distance)
        self.offset = float(self.model.offset_)
        self.square_norms = np.einsum("ij,ij->i", self.examples, self.examples)
        # Two float64 computations of |x - e|^2 over `dim` coordinates, in any order of
        # operations, differ by at most this times |x|^2 + |e|^2.
        self.slack = 4 * (dim + 4) * EPS
        self.exact = examples.dtype == np.float64  # else scikit-learn computes in float32
        self.referrals = 0

    def is_outlier(self, row: np.ndarray) -> bool:
        """scikit-learn's `predict(row) == -1` for one row (float64, shape (d,))."""
        verdict = self.verdict(row) if self.exact else None
        if verdict is None:
            self.referrals += 1
            return bool(self.model.predict(row[None])[0] == -1)
        return verdict

    def verdict(self, row: np.ndarray) -> bool | None:
        """The verdict, or None where rounding could change it."""
        diff = self.examples - row
        squared = np.einsum("ij,ij->i", diff, diff)  # squared distances to the examples
        bound = self.slack * (self.square_norms + float(row @ row))
        lowest, highest = squared - bound, squared + bound
        if np.any(lowest <= 0.0):  # the row (nearly) repeats an example
            return None
        order = np.argsort(squared, kind="stable")
        near, far = order[:self.k], order[self.k:]
        if len(far) and np.max(highest[near]) >= np.min(lowest[far]):
            return None  # which examples are the k nearest is open
        density = float(np.mean(self.density[near]))
        k_distance = self.k_distance[near]

        def margin(distances: np.ndarray) -> float:  # score - offset_; < 0: outlier
            reach = np.maximum(distances, k_distance)
            return -(float(np.mean(reach)) + 1e-10) * density - self.offset

        most = margin(np.sqrt(lowest[near]) * (1 - 4 * EPS))
        least = margin(np.sqrt(highest[near]) * (1 + 4 * EPS))
        rounding = SCORE_SLACK * (1.0 + abs(most) + abs(self.offset))
        if least - rounding > 0.0:
            return False
        if most + rounding < 0.0:
            return True
        return None
