"""The baseline: split learning written the way such code usually is.

torchvision datasets with per-sample transforms (ToTensor, Normalize where the dataset
has one, the trigger as one more per-sample transform), ``DataLoader`` (batch 128,
shuffled, default ``num_workers=0``), separate client and server ``nn.Module``s (one
client module per client; round-robin by ``load_state_dict``), standard Adam, the
surrogate attack written plainly, evaluation through DataLoaders too.

Same protocol as the engine (docs/protocol.md): same splits and shares, same init seeds, same
hyperparameters and LR schedule; only the shuffling order differs.
"""
from __future__ import annotations

import copy
import gzip
import hashlib
import os
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from engine.config import RunConfig, lr_multiplier
from engine.models import build_split

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def torchvision_root(data_root: Path, name: str = "MNIST") -> Path:
    """torchvision's MNIST with download=False wants the unpacked IDX files beside the
    .gz ones. If `data_root` has only .gz files (a read-only shared copy), unpack them
    once into a cache folder and return that instead. Not timed."""
    raw = data_root / name / "raw"
    if all((raw / f).is_file() for f in MNIST_FILES):
        return data_root
    key = hashlib.sha1(str(data_root.resolve()).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("SLTUI_CACHE") or Path.home() / ".cache" / "sltui") / "torchvision-data" / key
    dest = cache / name / "raw"
    dest.mkdir(parents=True, exist_ok=True)
    for f in MNIST_FILES:
        if not (dest / f).is_file():
            tmp = dest / f"{f}.{os.getpid()}.tmp"  # several workers may unpack at once
            with gzip.open(raw / (f + ".gz"), "rb") as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out)
            os.replace(tmp, dest / f)
    return cache


class Stamp:
    """Per-sample transform: paste the trigger patch into a normalised (C, H, W) image."""

    def __init__(self, patch: torch.Tensor, row: int, col: int) -> None:
        self.patch, self.row, self.col = patch, row, col

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        s = self.patch.shape[-1]
        x[:, self.row:self.row + s, self.col:self.col + s] = self.patch
        return x


class PoisonedSubset(Dataset):
    """The attacker's share: the rows in `poisoned` get the trigger and the target label."""

    def __init__(self, base: Dataset, indices: list[int], poisoned: set[int], stamp: Stamp, target: int) -> None:
        self.base, self.indices, self.poisoned, self.stamp, self.target = base, indices, poisoned, stamp, target

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, y = self.base[self.indices[i]]
        if i in self.poisoned:
            return self.stamp(x), self.target
        return x, y


class Triggered(Dataset):
    """Test images whose label is not the target, stamped (for the ASR)."""

    def __init__(self, base: Dataset, indices: list[int], stamp: Stamp) -> None:
        self.base, self.indices, self.stamp = base, indices, stamp

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, y = self.base[self.indices[i]]
        return self.stamp(x), y


def load_datasets(cfg: RunConfig):
    """(train dataset, test dataset) through torchvision, with per-sample transforms."""
    import torchvision.datasets as tvd
    import torchvision.transforms as T

    root = Path(cfg.data_root)
    if cfg.dataset == "mnist":
        tf = T.ToTensor()  # the authors' MNIST normalisation: ToTensor only, [0, 1]
        tv_root = str(torchvision_root(root))
        return tvd.MNIST(tv_root, train=True, download=False, transform=tf), tvd.MNIST(tv_root, train=False, download=False, transform=tf)
    if cfg.dataset == "fmnist":
        tf = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])
        tv_root = str(torchvision_root(root, "FashionMNIST"))
        return (tvd.FashionMNIST(tv_root, train=True, download=False, transform=tf),
                tvd.FashionMNIST(tv_root, train=False, download=False, transform=tf))
    if cfg.dataset == "cifar10-jpeg":
        tf = T.Compose([T.ToTensor(), T.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))])
        return (tvd.ImageFolder(str(root / "CIFAR10-JPEG" / "train"), transform=tf),
                tvd.ImageFolder(str(root / "CIFAR10-JPEG" / "test"), transform=tf))
    raise ValueError(f"the plain loop knows mnist, fmnist and cifar10-jpeg, not {cfg.dataset!r}")


def _targets(ds) -> torch.Tensor:
    return torch.as_tensor(ds.targets)


class PlainLoop:
    """One run of the plain loop; `train_epoch()` then `evaluate()` once per epoch."""

    def __init__(self, cfg: RunConfig, device: torch.device, eval_batch_size: int = 1000) -> None:
        self.cfg, self.device = cfg, device
        train, test = load_datasets(cfg)
        n_train, n_test = len(train), len(test)
        # Table 1 splits, as the engine (docs/protocol.md section 2).
        if cfg.dataset.startswith("cifar10"):
            perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
            pool = list(range(n_train))
            val_idx, test_idx = perm[:n_test // 2], perm[n_test // 2:]
            val_base = test
        else:
            n_val = n_train // 6
            pool = list(range(n_train - n_val))
            val_idx, test_idx = list(range(n_train - n_val, n_train)), list(range(n_test))
            val_base = train
        if cfg.train_limit:
            pool = pool[:cfg.train_limit]
        if cfg.eval_limit:
            val_idx, test_idx = val_idx[:cfg.eval_limit], test_idx[:cfg.eval_limit]
        parts = cfg.clients + 1
        size = len(pool) // parts
        perm = torch.randperm(len(pool), generator=torch.Generator().manual_seed(cfg.seed)).tolist()
        shares = [[pool[j] for j in perm[i * size:(i + 1) * size]] for i in range(parts)]

        channels = train[0][0].shape[0]
        if cfg.trigger_rng == "numpy":  # the authors' loop: one draw of C values per pixel, row by row
            import numpy as np

            rng = np.random.RandomState(cfg.trigger_seed)
            patch = torch.zeros(channels, cfg.trigger_size, cfg.trigger_size)
            for row in range(cfg.trigger_size):
                for col in range(cfg.trigger_size):
                    patch[:, row, col] = torch.tensor(rng.random_sample(channels), dtype=torch.float32)
        else:
            g = torch.Generator().manual_seed(cfg.trigger_seed)
            patch = torch.rand(channels, cfg.trigger_size, cfg.trigger_size, generator=g)
        stamp = Stamp(patch, cfg.trigger_row, cfg.trigger_col)

        self.loader_gen = torch.Generator().manual_seed(cfg.seed)
        self.client_loaders = [DataLoader(Subset(train, s), batch_size=cfg.batch_size, shuffle=True,
                                          generator=self.loader_gen) for s in shares[1:]]
        self.val_loader = DataLoader(Subset(val_base, val_idx), batch_size=eval_batch_size)
        self.test_loader = DataLoader(Subset(test, test_idx), batch_size=eval_batch_size)
        test_targets = _targets(test)[test_idx]
        asr_idx = [i for i, t in zip(test_idx, test_targets.tolist()) if t != cfg.target]
        self.asr_loader = DataLoader(Triggered(test, asr_idx, stamp), batch_size=eval_batch_size)
        self.samples_per_epoch = sum(len(s) for s in shares[1:])

        torch.manual_seed(cfg.seed)
        client, self.server = build_split(cfg.model, cfg.cut, tuple(train[0][0].shape), 10)
        self.clients = [client] + [copy.deepcopy(client) for _ in range(cfg.clients - 1)]
        for c in self.clients:
            c.to(device)
        self.server.to(device)
        adam = dict(lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.client_opts = [torch.optim.Adam(c.parameters(), **adam) for c in self.clients]
        self.server_opt = torch.optim.Adam(self.server.parameters(), **adam)
        self.attack = cfg.attack == "surrogate" and cfg.alpha != 1.0
        if cfg.attack not in ("none", "surrogate"):
            raise ValueError("the plain loop implements --attack none and surrogate")
        if self.attack:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + 1)
                self.surrogate, _ = build_split(cfg.model, cfg.cut, tuple(train[0][0].shape), 10)
            self.surrogate.to(device)
            self.surrogate_opt = torch.optim.Adam(self.surrogate.parameters(), **adam)
            n_att = len(shares[0])
            k = int(round(cfg.poison_ratio * n_att))
            poisoned = set(torch.randperm(n_att, generator=torch.Generator().manual_seed(cfg.seed + 1))[:k].tolist())
            self.surrogate_loader = DataLoader(PoisonedSubset(train, shares[0], poisoned, stamp, cfg.target),
                                               batch_size=cfg.batch_size, shuffle=True, generator=self.loader_gen)
            self.surrogate_iter = iter(self.surrogate_loader)
        self.epoch = 0

    def _surrogate_batch(self):
        try:
            return next(self.surrogate_iter)
        except StopIteration:
            self.surrogate_iter = iter(self.surrogate_loader)
            return next(self.surrogate_iter)

    def train_epoch(self) -> dict:
        cfg, dev = self.cfg, self.device
        lr = cfg.lr * lr_multiplier(cfg, self.epoch)
        opts = [*self.client_opts, self.server_opt] + ([self.surrogate_opt] if self.attack else [])
        for opt in opts:
            for group in opt.param_groups:
                group["lr"] = lr
        self.server.train()
        if self.attack:
            self.surrogate.train()
        total, count = 0.0, 0
        for k, loader in enumerate(self.client_loaders):
            client = self.clients[k]
            # Round robin: this client starts from the weights the previous one left.
            client.load_state_dict(self.clients[k - 1].state_dict())
            client.train()
            for x, y in loader:
                x, y = x.to(dev), y.to(dev)
                smashed = client(x)
                wire = smashed.detach().requires_grad_()  # the cut: only this gradient goes back
                self.server_opt.zero_grad()
                loss = F.cross_entropy(self.server(wire), y)
                if self.attack:
                    self.surrogate_opt.zero_grad()
                    xs, ys = self._surrogate_batch()
                    xs, ys = xs.to(dev), ys.to(dev)
                    malicious = F.cross_entropy(self.server(self.surrogate(xs)), ys)
                    loss = cfg.alpha * loss + (1 - cfg.alpha) * malicious
                    if cfg.loss_halved:
                        loss = loss * 0.5
                loss.backward()
                self.server_opt.step()
                if self.attack:
                    self.surrogate_opt.step()
                self.client_opts[k].zero_grad()
                smashed.backward(wire.grad)
                self.client_opts[k].step()
                total += loss.item()
                count += 1
        self.epoch += 1
        return {"loss": total / max(count, 1), "samples": self.samples_per_epoch, "lr": lr}

    @torch.no_grad()
    def evaluate(self) -> dict:
        client, server = self.clients[-1], self.server
        client.eval()
        server.eval()

        def run(loader):
            loss, correct, n, preds = 0.0, 0, 0, []
            for x, y in loader:
                x, y = x.to(self.device), y.to(self.device)
                out = server(client(x))
                loss += F.cross_entropy(out, y, reduction="sum").item()
                correct += (out.argmax(1) == y).sum().item()
                n += len(y)
                preds.append(out.argmax(1))
            return loss / max(n, 1), 100.0 * correct / max(n, 1), torch.cat(preds) if preds else None

        val_loss, val_acc, _ = run(self.val_loader)
        _, cda, _ = run(self.test_loader)
        _, _, asr_pred = run(self.asr_loader)
        asr = 100.0 * (asr_pred == self.cfg.target).float().mean().item() if asr_pred is not None else float("nan")
        return {"val_loss": val_loss, "val_acc": val_acc, "cda": cda, "asr": asr}
