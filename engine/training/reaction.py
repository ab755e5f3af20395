"""The client that reacts (docs/protocol.md section 12): once a detector has flagged the
server and the clients have stopped split learning (`on_flag` = stop), each honest client
keeps its network as it was at the flag, frozen, and trains a fresh copy of the server
part's architecture on its own share, locally, with the transfer check's optimiser and
schedule (Adam at the run's learning rate and weight decay, constant). CDA and ASR of
that local model are what the client can deploy without the server: residual ASR there
means the backdoor had reached the client's own layers.

Every honest client takes the client network as the flag left it (in round-robin
training the clients hand one network on; the one in hand at the flag is the newest).
"""
from __future__ import annotations

import copy
import statistics
from typing import Any

import torch
from torch import nn

from ..models import build_split
from ..models.frozen import Frozen
from .context import RunContext
from .local_training import fit


def local_models(ctx: RunContext, honest: list[int], evaluate_model) -> dict[str, Any]:
    """Each honest client's local model: {"local": [{client, epochs, cda, asr}], "mean":
    {cda, asr}}. `evaluate_model(model)` gives (validation, test) evaluations as the run's
    own per-epoch evaluation does. Each client's server part and batch order come from
    generators of its own, seeded from the run's seed."""
    cfg, data = ctx.cfg, ctx.data
    local = []
    for k in honest:
        init = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + 300 + k)
        _, server = build_split(cfg.model, cfg.cut, data.input_shape, data.num_classes, device=ctx.device,
                                generator=init)
        model = nn.Sequential(Frozen(copy.deepcopy(ctx.client)), server)
        optimizer = torch.optim.Adam(server.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        order = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + 400 + k)
        fit(model, optimizer, len(data.shares[k + 1]), lambda idx, k=k: ctx.client_batch(k + 1, idx),
            cfg.local_epochs, cfg.batch_size, order, ctx.device, check_stop=ctx.check_stop)
        model.eval()
        _, test = evaluate_model(model)
        local.append({"client": k + 1, "epochs": cfg.local_epochs, "cda": test.acc,
                      "asr": test.asr if test.asr is not None else None})
    asr = [m["asr"] for m in local if m["asr"] is not None]
    mean = {"cda": statistics.fmean(m["cda"] for m in local) if local else None,
            "asr": statistics.fmean(asr) if asr else None}
    return {"local": local, "mean": mean}
