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

`features` says what LOF compares. "raw" is the published detector: the gradients as
they are. "direction" (the default) scales every gradient, example or observed, to unit
length first. The reason is measured (docs/protocol.md section 10): the honest examples
come from the first batches of training, and an honest first-layer gradient then grows
by one to two orders of magnitude within the first epoch, so raw LOF calls honest
training an outlier by its size alone (and a label-blind server, whose gradients stay
as small as at the start, an inlier). The authors' own evaluation avoids the drift by
fitting LOF to honest gradients of the same epoch it judges, which a client cannot have.
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


class SplitOut(Detector):
    name = "splitout"

    def __init__(self, share: float = 0.01, window: int = 10, seed: int = 0, features: str = "direction",
                 trace: bool = False) -> None:
        if features not in FEATURES:
            raise ValueError(f"unknown SplitOut features {features!r}")
        self.share, self.window, self.seed, self.features = share, window, seed, features
        self.tracing = trace
        self.lof: NoveltyLOF | None = None  # once fitted
        self.traced_lofs: dict[str, NoveltyLOF] = {}  # every kind of features, when tracing
        self.recent: list[int] = []  # the last `window` decisions, 1 = outlier
        self.epoch_labels: list[int] = []
        self.epoch_trace: dict[str, list[str]] = {f: [] for f in FEATURES}
        self.examples = 0

    def prepare(self, view: ClientView) -> None:
        # Generators of its own only: the global ones (CPU and CUDA) are never seeded or drawn from.
        generator = torch.Generator().manual_seed(self.seed)
        examples = honest_gradients(view, self.share, generator, self.seed)
        self.fit(examples)

    def fit(self, examples: np.ndarray) -> None:
        """Fit the outlier model to honest example gradients, one per row (n >= 2); when
        tracing, one model per kind of features."""
        self.examples = len(examples)
        self.lof = NoveltyLOF(features_of(examples, self.features))
        if self.tracing:
            self.traced_lofs = {f: self.lof if f == self.features else NoveltyLOF(features_of(examples, f))
                                for f in FEATURES}

    def observe(self, obs: Observation) -> bool:
        if obs.fake:
            return False
        assert self.lof is not None, "prepare() or fit() first"
        g = obs.first_grad.detach().flatten().double().cpu().numpy()[None]
        outlier = int(self.lof.is_outlier(features_of(g, self.features)[0]))
        for kind, lof in self.traced_lofs.items():
            verdict = outlier if kind == self.features else int(lof.is_outlier(features_of(g, kind)[0]))
            self.epoch_trace[kind].append(str(verdict))
        self.epoch_labels.append(outlier)
        self.recent = (self.recent + [outlier])[-self.window:]
        return len(self.recent) == self.window and 2 * sum(self.recent) > self.window

    def epoch_score(self) -> float | None:
        labels, self.epoch_labels = self.epoch_labels, []
        return 1.0 - sum(labels) / len(labels) if labels else None

    def trace(self) -> dict[str, str] | None:
        """This epoch's decisions per gradient, "1" an outlier, for each kind of features
        (only when tracing): any window can be judged from them afterwards."""
        if not self.tracing:
            return None
        out = {kind: "".join(labels) for kind, labels in self.epoch_trace.items()}
        self.epoch_trace = {f: [] for f in FEATURES}
        return out

    def facts(self) -> dict[str, int]:
        return {"honest_examples": self.examples}
