"""SplitOut (Erdogan et al., CANS'24), docs/protocol.md section 10.

Before training, the client simulates ordinary split learning on its own: a copy of its
network and a stand-in for the server's part (the same architecture, its own seeded
init) train one epoch on `share` of its data, and the flattened gradients of its
first-layer weight are kept as examples of honest training. A LocalOutlierFactor
(n_neighbors = n - 1, novelty = True) is fitted to them. During training every
first-layer gradient is classified; over each `window` of gradients the server is
flagged when outliers outnumber inliers. The per-epoch score is the share of the
epoch's gradients classified as inliers.

The simulation uses batches small enough to give at least MIN_EXAMPLES gradients (a
share of 1% of a few thousand images is only a couple of full batches).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..models import build_split
from .base import ClientView, Detector, Observation

MIN_EXAMPLES = 20


def first_weight(network: torch.nn.Module) -> torch.nn.Parameter:
    return next(network.parameters())


def honest_gradients(view: ClientView, share: float, generator: torch.Generator) -> np.ndarray:
    """One simulated epoch of honest split learning on `share` of the client's data:
    (n, d) flattened first-layer weight gradients."""
    n = len(view.labels)
    size = min(n, max(2, math.ceil(share * n)))
    rows = torch.randperm(n, generator=generator)[:size].to(view.labels.device)
    batch = max(1, min(view.batch_size, size // MIN_EXAMPLES))
    client = view.network
    _, server = build_split(view.model, view.cut, view.input_shape, view.num_classes)
    server.to(view.inputs.device)
    params = list(client.parameters()) + list(server.parameters())
    opt = torch.optim.Adam(params, lr=view.lr, weight_decay=view.weight_decay)
    client.train()
    server.train()
    grads = []
    for idx in rows.split(batch):
        loss = F.cross_entropy(server(client(view.inputs[idx])), view.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grads.append(first_weight(client).grad.detach().flatten().float().cpu())
        opt.step()
    return torch.stack(grads).double().numpy()


class SplitOut(Detector):
    name = "splitout"

    def __init__(self, share: float = 0.01, window: int = 10, seed: int = 0) -> None:
        self.share, self.window, self.seed = share, window, seed
        self.lof: Any = None  # sklearn's LocalOutlierFactor once fitted
        self.pending: list[torch.Tensor] = []
        self.window_labels: list[int] = []
        self.epoch_labels: list[int] = []
        self.examples = 0

    def prepare(self, view: ClientView) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):  # the run's own random stream stays as it was
            torch.manual_seed(self.seed)
            examples = honest_gradients(view, self.share, generator)
        self.fit(examples)

    def fit(self, examples: np.ndarray) -> None:
        """Fit the outlier model to honest example gradients, one per row (n >= 2)."""
        # Imported here: scikit-learn pulls in rich, and the engine imports no UI library.
        from sklearn.neighbors import LocalOutlierFactor

        self.examples = len(examples)
        self.lof = LocalOutlierFactor(n_neighbors=max(1, len(examples) - 1), novelty=True).fit(examples)

    def observe(self, obs: Observation) -> bool:
        if obs.fake:
            return False
        self.pending.append(obs.first_grad.detach().flatten().float())
        if len(self.pending) < self.window:
            return False
        self._classify()
        flagged = False
        while len(self.window_labels) >= self.window:
            window, self.window_labels = self.window_labels[:self.window], self.window_labels[self.window:]
            flagged |= 2 * sum(window) > self.window
        return flagged

    def _classify(self) -> None:
        """Classify the pending gradients in one call (+1 inlier, -1 outlier)."""
        assert self.lof is not None, "prepare() or fit() first"
        batch = torch.stack(self.pending).cpu().double().numpy()
        self.pending = []
        outliers = [int(label == -1) for label in self.lof.predict(batch)]
        self.epoch_labels += outliers
        self.window_labels += outliers

    def epoch_score(self) -> float | None:
        if self.pending:  # scored now; a window this completes is judged at the next step
            self._classify()
        labels, self.epoch_labels = self.epoch_labels, []
        return 1.0 - sum(labels) / len(labels) if labels else None

    def facts(self) -> dict[str, int]:
        return {"honest_examples": self.examples}
