"""Gradients Scrutinizer (Fu et al., NDSS'23), docs/protocol.md section 10.

An honest server's gradients for the client's smashed data follow the labels: two
samples of the same class get more alike gradients than two of different classes. A
hijacking server's do not. Per step the client takes the per-sample gradients it
received (the rows of the gradient at the cut), their pairwise similarities
c(i, j) = 0.5 + 0.5 cos(g_i, g_j) for i != j in one matrix product, and the mean and
standard deviation over same-label and different-label pairs. Every `window` steps:

    gap   = (mean_s - mean_d) / (mean_s + mean_d)           (means over the window)
    err   = mean RMSE of degree-2 polynomial fits to the window's mean_s and mean_d
    iou   = overlap / union of [mean_s +- std_s] and [mean_d +- std_d] (0 if disjoint)
    DS    = sigmoid(5 (m_gap m_err m_iou - 0.7)),  m_gap = gap / |gap|^0.6,
            m_err = -ln(7 err + e^-2),  m_iou = -ln(iou + e^-1)

DS near 1: honest (a clear, steady gap); it flags the server when DS < `threshold`.

Two forms (`form`). "windowed" (above) scores the means of the window's steps. "published"
scores each checkpoint step i as the authors do: gap and the IoU intervals from step i's
own statistics, err from fits to the histories of mean_s and mean_d over every step of the
client so far (steps 0..i of the run). Calibration (docs/detectors.md) chooses between
them on honest runs only; a run file records the form in its config.

The threshold. The published one is 0.5, the sigmoid's midpoint: a window must reach
m_gap m_err m_iou >= 0.7 to pass. A server blind to the labels gives gap ~ 0, so DS sits
at its floor sigmoid(-3.5) ~ 0.03 whatever err and iou are. On LeNet the honest gap is
small and shrinks as the model fits the data (docs/protocol.md section 10 has the
measurements), so honest windows drift under 0.5 within a few epochs, and over a whole
run down to the floor. Calibration on honest runs (docs/detectors.md) found no threshold
that spares them, so the run's default is the published one; the detector's own defaults
below are the published ones too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .base import Detector, Observation, sigmoid

PUBLISHED_THRESHOLD = 0.5


def pair_statistics(grads: torch.Tensor, labels: torch.Tensor, std: str = "population") -> torch.Tensor | None:
    """(mean_s, std_s, mean_d, std_d) of c(i, j) over same- and different-label pairs
    i != j of one step's per-sample gradients (rows of `grads`), or None when the batch
    has fewer than two pairs of one kind. One matrix product gives every cosine; the
    statistics are masked sums over it; `std` "population" divides the squared deviations
    by the number of pairs (np.std, as the authors' code), "sample" by one fewer (sltui's
    runs before the choice was recorded). The sums run over
    the whole matrix, in double precision, in this order on purpose: a standard deviation
    is a difference of two close sums, and summing the same terms another way (class sums,
    one triangle, all pairs minus same-label ones) can move its last bits and with them the
    score."""
    g = F.normalize(grads.detach().flatten(1).float(), dim=1)
    sim = (0.5 + 0.5 * (g @ g.T)).double()
    same = (labels[:, None] == labels[None, :]).double()
    same.fill_diagonal_(0.0)
    different = 1.0 - same
    different.fill_diagonal_(0.0)
    counts = torch.stack([same.sum(), different.sum()])
    if bool((counts < 2).any()):
        return None
    masks = torch.stack([same, different])
    sums = (masks * sim).sum(dim=(1, 2))
    squares = (masks * sim * sim).sum(dim=(1, 2))
    means = sums / counts
    stds = ((squares - counts * means * means).clamp(min=0.0) / (counts - float(std == "sample"))).sqrt()
    return torch.stack([means[0], stds[0], means[1], stds[1]]).float()


@dataclass(frozen=True)
class WindowScore:
    gap: float
    err: float
    iou: float
    ds: float


def interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two closed intervals (lo, hi); 0 when disjoint."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    union = max(a[1], b[1]) - min(a[0], b[0])
    return overlap / union if overlap > 0 and union > 0 else 0.0


def fit_rmse(values: np.ndarray) -> float:
    """RMSE of a degree-2 polynomial fit to `values` over their step index."""
    steps = np.arange(len(values), dtype=np.float64)
    degree = min(2, len(values) - 1)
    fitted = np.polyval(np.polyfit(steps, values, degree), steps)
    return float(np.sqrt(np.mean((values - fitted) ** 2)))


def window_score(stats: np.ndarray) -> WindowScore:
    """The windowed form's score: `stats` has one row (mean_s, std_s, mean_d, std_d) per
    step of the window; gap and IoU from the window's means, err from fits over it."""
    return _score(*(float(v) for v in stats.mean(axis=0)),
                  err=(fit_rmse(stats[:, 0]) + fit_rmse(stats[:, 2])) / 2)


def step_score(history: np.ndarray) -> WindowScore:
    """The published form's score at the last step of `history` (one row per step since
    the client's first): gap and IoU from that step's own statistics, err from fits over
    the whole history."""
    return _score(*(float(v) for v in history[-1]),
                  err=(fit_rmse(history[:, 0]) + fit_rmse(history[:, 2])) / 2)


def _score(mean_s: float, std_s: float, mean_d: float, std_d: float, err: float) -> WindowScore:
    gap = (mean_s - mean_d) / (mean_s + mean_d) if mean_s + mean_d > 0 else 0.0
    iou = interval_iou((mean_s - std_s, mean_s + std_s), (mean_d - std_d, mean_d + std_d))
    m_gap = gap / abs(gap) ** 0.6 if gap != 0 else 0.0
    m_err = -math.log(7 * err + math.exp(-2))
    m_iou = -math.log(iou + math.exp(-1))
    return WindowScore(gap, err, iou, sigmoid(5 * (m_gap * m_err * m_iou - 0.7)))


FORMS = ("windowed", "published")
STDS = ("population", "sample")


class Scrutinizer(Detector):
    name = "scrutinizer"

    def __init__(self, window: int = 50, threshold: float = PUBLISHED_THRESHOLD, form: str = "published",
                 trace: bool = False, std: str = "population") -> None:
        if form not in FORMS:
            raise ValueError(f"unknown Scrutinizer form {form!r}")
        if std not in STDS:
            raise ValueError(f"unknown Scrutinizer std {std!r}")
        self.window, self.threshold, self.form, self.tracing, self.std = window, threshold, form, trace, std
        self.pending: list[torch.Tensor] = []
        self.history: list[np.ndarray] = []  # every step's statistics (the published form, or a trace)
        self.epoch_values: list[float] = []
        self.epoch_trace: dict[str, list[float]] = {f: [] for f in FORMS}
        self.windows = 0

    def observe(self, obs: Observation) -> bool:
        if obs.fake:
            return False
        stats = pair_statistics(obs.cut_grad, obs.labels, self.std)
        if stats is None:
            return False
        self.pending.append(stats)
        if len(self.pending) < self.window:
            return False
        window = torch.stack(self.pending).cpu().double().numpy()
        self.pending = []
        scores: dict[str, float] = {}
        if self.form == "windowed" or self.tracing:
            scores["windowed"] = window_score(window).ds
        if self.form == "published" or self.tracing:
            self.history.append(window)
            scores["published"] = step_score(np.concatenate(self.history)).ds
        if self.tracing:
            for form, ds in scores.items():
                self.epoch_trace[form].append(ds)
        score = scores[self.form]
        self.windows += 1
        self.epoch_values.append(score)
        return score < self.threshold

    def epoch_score(self) -> float | None:
        values, self.epoch_values = self.epoch_values, []
        return sum(values) / len(values) if values else None

    def trace(self) -> dict[str, list[float]] | None:
        """This epoch's score at each checkpoint in both forms (only when tracing)."""
        if not self.tracing:
            return None
        out, self.epoch_trace = self.epoch_trace, {f: [] for f in FORMS}
        return out

    def facts(self) -> dict[str, int]:
        return {"windows": self.windows}
