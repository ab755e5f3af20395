"""SplitOut (Erdogan et al., CANS'24), docs/protocol.md section 10.

Before training, the client simulates ordinary split learning on its own: a copy of its
network and a stand-in for the server's part (the same architecture, its own seeded
init) train one epoch on `share` of its data, and the flattened gradients of its
first-layer weight are kept as examples of honest training. A LocalOutlierFactor
(n_neighbors = n - 1, novelty = True) is fitted to them (lof.py: scikit-learn's, with its
verdicts on single rows computed without its per-call cost). During training every
first-layer gradient is classified; the server is flagged when outliers outnumber
inliers among the last `window` gradients (a sliding window). The per-epoch score is the share of the
epoch's gradients classified as inliers.

The simulation uses the run's batch size, so that its gradients have the scale and noise
of the real ones; as 1% of a few thousand images is only a batch or two, too few
examples for LOF, it takes at least MIN_BATCHES batches of the client's data.

`features` says what LOF compares. "raw" (the default) is the published detector: the
gradients as they are. "direction" scales every gradient, example or observed, to unit
length first. The reason it exists is measured (docs/protocol.md section 10): the honest
examples come from the first batches of training, and an honest first-layer gradient then
grows by one to two orders of magnitude within the first epoch, so raw LOF calls honest
training an outlier by its size alone (and a label-blind server, whose gradients stay as
small as at the start, an inlier).

`fit` says when LOF is fitted. "once" (the default) is the deployed client the paper
describes: fitted before training on the simulated epoch, then used for the whole run.
"per-epoch" is how the authors' notebook (sg_ad.ipynb) measures false positives: in every
epoch LOF is fitted anew to the first `share` of that epoch's observed gradients (at least
MIN_BATCHES), those gradients are judged by it too, and the window starts afresh with the
epoch. A client cannot do this against a server it does not yet trust: the gradients it
fits to are the server's own. On an honest server it is the authors' evaluation, and it
flags epoch 1 as the deployed client does; refitting only keeps later epochs quiet
(docs/detectors.md, "SplitOut's two protocols").
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..models import build_split
from .base import ClientView, Detector, Observation
from .lof import NoveltyLOF

MIN_BATCHES = 10
FEATURES = ("direction", "raw")
FITS = ("once", "per-epoch")


def features_of(grads: np.ndarray, features: str) -> np.ndarray:
    """The rows LOF sees: the gradients as they are ("raw"), or scaled to unit length
    ("direction"; an all-zero gradient stays zero)."""
    if features == "raw":
        return grads
    norms = np.linalg.norm(grads, axis=1, keepdims=True)
    return grads / np.where(norms > 0, norms, 1.0)


def first_weight(network: torch.nn.Module) -> torch.nn.Parameter:
    return next(network.parameters())


def honest_gradients(view: ClientView, share: float, generator: torch.Generator, seed: int = 0) -> np.ndarray:
    """One simulated epoch of honest split learning, in batches of the run's batch size
    (so the examples have the scale and noise of the real steps' gradients), on `share`
    of the client's data, or on MIN_BATCHES batches of it where that share is fewer.
    Returns the (steps, d) flattened first-layer weight gradients."""
    n = len(view.labels)
    batch = min(view.batch_size, n)
    size = min(n, max(math.ceil(share * n), MIN_BATCHES * batch))
    rows = torch.randperm(n, generator=generator)[:size].to(view.labels.device)
    client = view.network
    # The stand-in server's initial weights: a generator of the detector's own (`seed`).
    _, server = build_split(view.model, view.cut, view.input_shape, view.num_classes,
                            generator=torch.Generator().manual_seed(seed))
    server.to(view.inputs.device)
    params = list(client.parameters()) + list(server.parameters())
    opt = torch.optim.Adam(params, lr=view.lr, weight_decay=view.weight_decay)
    client.train()
    server.train()
    grads: list[torch.Tensor] = []
    for idx in rows.split(batch):
        loss = F.cross_entropy(server(client(view.inputs[idx])), view.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads.append(first_weight(client).grad.detach().flatten().float().cpu())
        opt.step()
    return torch.stack(grads).double().numpy()


class Judge:
    """One way of judging a client's gradients: LOF over `features`, fitted `fit` ("once":
    by `fit_examples` before training; "per-epoch": on each epoch's first `epoch_examples`
    gradients), with a sliding window of `window` decisions (restarted each epoch when
    fitted per epoch). `add` takes a gradient and says whether a window flags."""

    def __init__(self, features: str, fit: str, window: int, epoch_examples: int) -> None:
        self.features, self.fit, self.window, self.epoch_examples = features, fit, window, epoch_examples
        self.lof: NoveltyLOF | None = None
        self.pending: list[np.ndarray] = []  # per-epoch: this epoch's gradients before its fit
        self.recent: list[int] = []  # the last `window` decisions, 1 = outlier
        self.decisions: list[int] = []  # this epoch's

    def fit_examples(self, examples: np.ndarray) -> None:
        self.lof = NoveltyLOF(features_of(examples, self.features))

    def add(self, grad: np.ndarray) -> bool:
        """Judge one flattened gradient (float64, shape (d,)); True when a window of
        `window` decisions holds more outliers than inliers. Fitting per epoch, the
        epoch's first gradients wait for the fit and are judged with it."""
        row = features_of(grad[None], self.features)[0]
        if self.lof is None:
            assert self.fit == "per-epoch", "fit_examples() first"
            self.pending.append(row)
            if len(self.pending) < self.epoch_examples:
                return False
            self.lof = NoveltyLOF(np.stack(self.pending))
            rows, self.pending = self.pending, []
        else:
            rows = [row]
        flagged = False
        for r in rows:
            outlier = int(self.lof.is_outlier(r))
            self.decisions.append(outlier)
            self.recent = (self.recent + [outlier])[-self.window:]
            flagged = flagged or (len(self.recent) == self.window and 2 * sum(self.recent) > self.window)
        return flagged

    def end_epoch(self) -> list[int]:
        """This epoch's decisions (1 = outlier); fitting per epoch, forget the epoch's fit
        and window (gradients still waiting for a fit are left unjudged)."""
        decisions, self.decisions = self.decisions, []
        if self.fit == "per-epoch":
            self.lof, self.pending, self.recent = None, [], []
        return decisions


def trace_key(features: str, fit: str) -> str:
    """A trace's key for one way of judging: the features alone for a fit once (the keys
    runs traced before fitting per epoch existed), `features/per-epoch` otherwise."""
    return features if fit == "once" else f"{features}/{fit}"


class SplitOut(Detector):
    name = "splitout"

    def __init__(self, share: float = 0.01, window: int = 10, seed: int = 0, features: str = "raw",
                 fit: str = "once", trace: bool = False) -> None:
        if features not in FEATURES:
            raise ValueError(f"unknown SplitOut features {features!r}")
        if fit not in FITS:
            raise ValueError(f"unknown SplitOut fit {fit!r}")
        self.share, self.window, self.seed, self.features, self.fit_mode = share, window, seed, features, fit
        self.tracing = trace
        self.epoch_examples = MIN_BATCHES
        self.judges: dict[str, Judge] = {}  # by trace key: its own, and every other way when tracing
        self.last_epoch: dict[str, list[int]] = {}
        self.examples = 0

    @property
    def key(self) -> str:
        return trace_key(self.features, self.fit_mode)

    @property
    def lof(self) -> NoveltyLOF | None:
        """The model the detector's own way of judging uses now (None before its fit)."""
        judge = self.judges.get(self.key)
        return judge.lof if judge else None

    def prepare(self, view: ClientView) -> None:
        steps = math.ceil(len(view.labels) / max(1, min(view.batch_size, len(view.labels))))
        self.epoch_examples = max(MIN_BATCHES, int(self.share * steps))
        self._make_judges()
        if any(j.fit == "once" for j in self.judges.values()):
            # Generators of its own only: the global ones (CPU and CUDA) are never seeded or drawn from.
            generator = torch.Generator().manual_seed(self.seed)
            self._fit_once(honest_gradients(view, self.share, generator, self.seed))

    def fit(self, examples: np.ndarray) -> None:
        """Fit the models that fit once to honest example gradients, one per row (n >= 2)."""
        self._make_judges()
        self._fit_once(examples)

    def _make_judges(self) -> None:
        ways = [(f, w) for w in FITS for f in FEATURES] if self.tracing else [(self.features, self.fit_mode)]
        self.judges = {trace_key(f, w): Judge(f, w, self.window, self.epoch_examples) for f, w in ways}

    def _fit_once(self, examples: np.ndarray) -> None:
        self.examples = len(examples)
        for judge in self.judges.values():
            if judge.fit == "once":
                judge.fit_examples(examples)

    def observe(self, obs: Observation) -> bool:
        if obs.fake:
            return False
        assert self.judges, "prepare() or fit() first"
        g = obs.first_grad.detach().flatten().double().cpu().numpy()
        flags = {key: judge.add(g) for key, judge in self.judges.items()}
        return flags[self.key]

    def epoch_score(self) -> float | None:
        self.last_epoch = {key: judge.end_epoch() for key, judge in self.judges.items()}
        labels = self.last_epoch.get(self.key, [])
        return 1.0 - sum(labels) / len(labels) if labels else None

    def trace(self) -> dict[str, str] | None:
        """The epoch that just ended: its decision on each gradient, "1" an outlier, for
        every way of judging (only when tracing; keys from trace_key): any window can be
        judged from them afterwards."""
        if not self.tracing:
            return None
        return {key: "".join(map(str, labels)) for key, labels in self.last_epoch.items()}

    def facts(self) -> dict[str, int]:
        if self.fit_mode == "per-epoch":
            return {"epoch_examples": self.epoch_examples}
        return {"honest_examples": self.examples}
