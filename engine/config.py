"""RunConfig: every setting of one experiment, validated, frozen and JSON-able.

Defaults are the paper's protocol as docs/protocol.md describes it (its "Run options"
section says what each field changes). Fields whose default depends on the dataset or
model (epochs, patience, LR milestones, attack phase epochs, trigger column) are stored
as ``None`` by the user and resolved by :func:`resolve`, so a stored config always holds
the concrete values a run used; :func:`resolved_fields` names the ones that were defaults,
which a run file records so that a clone resolves them again (engine/config.py).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

DATASETS = (
    "mnist", "fmnist", "cifar10", "cifar10-jpeg",
    "mnist-10k", "fmnist-5", "emnist-letters-aj",
    "synthetic", "synthetic-rgb",
)
MODELS = ("lenet", "stripnet", "resnet9")
ATTACKS = ("none", "surrogate", "autoencoder", "hijack", "client")
TRIGGERS = ("patch", "blend", "sig")
# The generator the trigger's random values are drawn from (docs/protocol.md section 3):
# numpy's legacy generator as the authors' code (np.random.seed, then np.random.random per
# pixel: their exact pattern), or a torch generator (sltui's pattern before 2026-12).
TRIGGER_RNGS = ("numpy", "torch")
DEFENSES = ("splitguard", "scrutinizer", "splitout")
# Detectors that change training (SplitGuard's fake batches are not applied); the others
# only watch, so a run with them trains exactly as one without (tests/test_defenses.py).
TRAINING_DEFENSES = ("splitguard",)
# How Gradients Scrutinizer scores a checkpoint (docs/protocol.md section 10): the means
# of a window of steps, or the checkpoint step itself as published.
SCRUTINIZER_FORMS = ("windowed", "published")
# The standard deviation of Gradients Scrutinizer's pair similarities: over the pairs as a
# population (np.std, the authors' code and the spec) or as a sample (n - 1; runs before).
SCRUTINIZER_STDS = ("population", "sample")
# What SplitOut's LOF compares (docs/protocol.md section 10): gradient directions, or the
# raw gradients as published.
SPLITOUT_FEATURES = ("direction", "raw")
# When SplitOut's client fits its LOF (docs/protocol.md section 10): once, before training,
# on a simulated honest epoch (the deployed client, as the paper describes it), or anew in
# every epoch on that epoch's first gradients (how the authors' notebook evaluates).
SPLITOUT_FITS = ("once", "per-epoch")
CUTS = (1, 2, 3)
RR_GRANULARITIES = ("epoch", "batch")
AE_GRADS = ("straight", "through")
# The autoencoder attack as the paper's text describes it, or as the only public trace of
# the authors' code does it (docs/protocol.md section 7, "The code variant").
AE_VARIANTS = ("paper", "code")
# The hijack's discriminator: conditioned on the class (projection, shadow rows of the same
# class) or FSHA's plain critic (no class, shadow rows of any class).
HIJACK_CRITICS = ("conditional", "plain")
# Who learns the backdoor in the hijack's Finetune stage: h alone, on shadows kept as
# Steal left them (clean-trained, as the real client is), or h and the shadows together.
HIJACK_FINETUNE = ("h", "both")
# Which h the hijack's task gradient to the client goes through in Implant: the server's
# (backdoored) h, or a frozen copy of h as the honest warm-up left it.
HIJACK_TASK_HEADS = ("backdoored", "clean")
DEVICES = ("auto", "cpu", "cuda")
ON_FLAG = ("continue", "stop")

# Options that mean something only for one attack, one trigger kind or one detector: the
# new-run form shows them only then, and a run's experiment key leaves them out otherwise
# (engine/sweeps/grid.py), so an option that does not apply never splits a point.
ATTACK_FIELDS: dict[str, tuple[str, ...]] = {
    "surrogate": ("alpha", "poison_ratio", "loss_halved", "aux_size"),
    "autoencoder": ("ae_share", "ae_grad", "ae_variant", "ae_phase1_epochs", "ae_epochs", "aux_size"),
    "hijack": ("poison_ratio", "aux_size", "hijack_warmup_epochs", "hijack_shadow_epochs", "hijack_shadows", "hijack_gp",
               "hijack_d_lr", "hijack_beta", "hijack_train_h", "hijack_critic",
               "hijack_finetune", "hijack_task_head"),
    "client": ("malicious_client", "poison_ratio"),
}
TRIGGER_FIELDS: dict[str, tuple[str, ...]] = {"blend": ("blend_alpha",), "sig": ("sig_delta", "sig_freq")}
DEFENSE_FIELDS: dict[str, tuple[str, ...]] = {
    "splitguard": ("splitguard_start", "splitguard_fake_prob", "splitguard_window", "splitguard_threshold",
                   "splitguard_memory"),
    "scrutinizer": ("scrutinizer_window", "scrutinizer_threshold", "scrutinizer_form", "scrutinizer_std"),
    "splitout": ("splitout_share", "splitout_window", "splitout_features", "splitout_fit"),
}

# The attacks that train on the attacker's auxiliary set, which --aux-size limits.
AUX_ATTACKS = ("surrogate", "autoencoder", "hijack")

CIFAR_LIKE = ("cifar10", "cifar10-jpeg", "synthetic-rgb")


from .errors import ConfigError  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "mnist"
    model: str = "lenet"
    cut: int = 1
    clients: int = 1
    attack: str = "none"
    alpha: float = 0.5
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] | None = None
    lr_gamma: float = 0.1
    patience: int | None = None
    seed: int = 47
    trigger_size: int = 8
    trigger_row: int = 0
    trigger_col: int | None = None
    trigger_seed: int = 56
    trigger_rng: str = "numpy"
    target: int = 0
    trigger: str = "patch"
    blend_alpha: float = 0.2
    sig_delta: float = 20 / 255
    sig_freq: float = 6.0
    poison_ratio: float = 0.5
    loss_halved: bool = False
    rr_granularity: str = "epoch"
    ae_share: float = 0.5
    ae_grad: str = "straight"
    ae_variant: str = "paper"
    ae_phase1_epochs: int | None = None
    ae_epochs: int | None = None
    aux_size: int | None = None
    hijack_warmup_epochs: int | None = None
    hijack_shadow_epochs: int = 5
    hijack_shadows: int = 3
    hijack_gp: float = 500.0
    hijack_d_lr: float = 1e-4
    hijack_beta: float = 0.7
    hijack_train_h: bool = False
    hijack_critic: str = "conditional"
    hijack_finetune: str = "both"
    hijack_task_head: str = "backdoored"
    malicious_client: int = 0
    device: str = "auto"
    data_root: str | None = None
    train_limit: int | None = None
    eval_limit: int | None = None
    eval_batch_size: int | None = None
    save_weights: bool = True
    name: str = ""
    # Client-side detectors (docs/protocol.md section 10). The parameters calibration
    # decides (memory, form, threshold, features, window) are the output of its rule on the
    # honest calibration runs (examples/calibration/calibration.json, `python
    # sltui calibrate rule`): SplitGuard's most responsive memory that flagged no honest
    # run; for Scrutinizer and SplitOut no candidate passed, so they keep the published
    # setting, which flags honest runs (docs/detectors.md).
    defenses: tuple[str, ...] = ()
    # 21: the authors' `index > N` with N = 20 and a 0-based index (earlier runs used 20: stored in their files).
    splitguard_start: int = 21
    splitguard_fake_prob: float = 0.1
    splitguard_window: int = 5
    splitguard_memory: int = 5
    splitguard_threshold: float = 0.5
    scrutinizer_window: int = 50
    scrutinizer_threshold: float = 0.5
    scrutinizer_form: str = "published"
    scrutinizer_std: str = "population"
    splitout_share: float = 0.01
    splitout_window: int = 10
    splitout_features: str = "raw"
    splitout_fit: str = "once"
    # The client that reacts (docs/protocol.md section 12): at the first flag, `stop` ends
    # split learning and each honest client trains a fresh server part on its own share
    # for `local_epochs` under its frozen network.
    on_flag: str = "continue"
    local_epochs: int = 10
    # Record what calibration needs (every detector's scores in its other forms,
    # docs/detectors.md "Calibration"); changes no number of the run.
    defense_trace: bool = False

    # ---- JSON -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["lr_milestones"] is not None:
            out["lr_milestones"] = list(out["lr_milestones"])
        out["defenses"] = list(out["defenses"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        if not isinstance(data, dict):
            raise ConfigError("a config must be a JSON object of field: value")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown config field {unknown[0]!r}; known fields: {', '.join(sorted(known))}"
            )
        kwargs = {k: _coerce(k, v) for k, v in data.items()}
        return validate(cls(**kwargs))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "RunConfig":
        return validate(dataclasses.replace(self, **changes))


# The value a run had for each field before the field existed: what a run file without the
# field means. Frozen: a new field adds its entry (the value that keeps the old behaviour,
# tests/test_sweep.py checks every field has one); a changed default changes nothing here.
LEGACY_VALUES: dict[str, Any] = {
    "dataset": "mnist", "model": "lenet", "cut": 1, "clients": 1, "attack": "none", "alpha": 0.5,
    "epochs": None, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4, "lr_milestones": None, "lr_gamma": 0.1,
    "patience": None, "seed": 47, "trigger_size": 8, "trigger_row": 0, "trigger_col": None, "trigger_seed": 56,
    "trigger_rng": "torch",
    "target": 0, "trigger": "patch", "blend_alpha": 0.2, "sig_delta": 20 / 255, "sig_freq": 6.0,
    "poison_ratio": 0.5, "loss_halved": False, "rr_granularity": "epoch", "ae_share": 0.5, "ae_grad": "straight",
    "ae_variant": "paper",
    "ae_phase1_epochs": None, "ae_epochs": None, "aux_size": None, "hijack_warmup_epochs": 2,
    "hijack_shadow_epochs": 5, "hijack_shadows": 3, "hijack_gp": 500.0, "hijack_d_lr": 1e-4, "hijack_beta": 0.7,
    "hijack_train_h": False, "hijack_critic": "conditional", "hijack_finetune": "both",
    "hijack_task_head": "backdoored", "malicious_client": 0, "train_limit": None, "eval_limit": None,
    "defenses": [], "splitguard_start": 20, "splitguard_fake_prob": 0.1, "splitguard_window": 5,
    # SplitGuard's memory came after runs of the published detector, which keeps everything.
    "splitguard_memory": 0, "splitguard_threshold": 0.5, "scrutinizer_window": 50, "scrutinizer_threshold": 0.15,
    "scrutinizer_form": "windowed", "splitout_share": 0.01, "splitout_window": 10, "splitout_features": "direction",
    "splitout_fit": "once",
    "on_flag": "continue", "local_epochs": 10,
    # Scrutinizer's pair statistics used the sample standard deviation before this field.
    "scrutinizer_std": "sample",
}



def stored_config(data: dict[str, Any]) -> RunConfig:
    """The RunConfig a stored run file's ``config`` describes: a field the file does not
    hold takes the value runs had before the field existed (LEGACY_VALUES), never today's
    default, so an older file keeps meaning what it meant (its trigger pattern, say)."""
    if not isinstance(data, dict):
        raise ConfigError("a config must be a JSON object of field: value")
    known = {f.name for f in fields(RunConfig)}
    missing = {k: v for k, v in LEGACY_VALUES.items() if k in known and k not in data}
    return RunConfig.from_dict({**missing, **data})


FIELD_HELP: dict[str, str] = {
    "dataset": "dataset: " + ", ".join(DATASETS),
    "model": "model: " + ", ".join(MODELS),
    "cut": "cut layer: 1, 2 or 3",
    "clients": "number of honest clients K (>= 1)",
    "attack": "attack: " + ", ".join(ATTACKS),
    "alpha": "surrogate attack: weight of the innocent loss, in (0, 1]",
    "epochs": "training epochs (default 90, 140 for CIFAR-10)",
    "batch_size": "batch size",
    "lr": "Adam learning rate",
    "weight_decay": "Adam weight decay",
    "lr_milestones": "0-based epochs from which the LR is multiplied by lr-gamma once more, e.g. 26,41,56,71 (default per model, as the authors' code; 'none' = constant)",
    "lr_gamma": "LR multiplier at each milestone",
    "patience": "early-stopping patience on validation loss, epochs (default 70, 90 for CIFAR-10; 0 = off)",
    "seed": "seed for the clients' shares, init and shuffling (validation and test are fixed)",
    "trigger_size": "trigger square side, pixels",
    "trigger_row": "trigger top row",
    "trigger_col": "trigger left column (default: upper middle, W//2 - size//2)",
    "trigger_seed": "seed of the trigger's random values",
    "trigger_rng": "generator of the trigger's random values: numpy (the authors' exact pattern) or torch (sltui's before 2026-12)",
    "target": "target class of the backdoor",
    "poison_ratio": "surrogate, hijack and client attacks: share of the attacker's data that is poisoned",
    "loss_halved": "surrogate attack: halve the combined loss as the authors' code does",
    "rr_granularity": "round-robin hand-over of client weights: epoch or batch",
    "ae_share": "autoencoder attack: share of each batch sent through the injector",
    "ae_grad": "autoencoder attack: gradient to the client, straight or through the autoencoder",
    "ae_variant": "autoencoder attack: paper (as the paper's text) or code (as the trace of the authors' code: the server trained as the clean reference network, a fully poisoned backdoored one, a Tanh autoencoder)",
    "ae_phase1_epochs": "autoencoder attack: epochs of the two phase-1 networks (default 70, 100 CIFAR-10)",
    "ae_epochs": "autoencoder attack: autoencoder training epochs (default 100, 180 CIFAR-10)",
    "aux_size": "server-side attacks (surrogate, autoencoder, hijack): use only N images of the attacker's share, the auxiliary set (default: all of it)",
    "hijack_warmup_epochs": "hijack attack: honest epochs before the shadow client is stolen (default 6 on MNIST, 12 on FMNIST, 2 elsewhere; at most epochs - 1)",
    "hijack_shadow_epochs": "hijack attack: epochs of each of the Steal and Finetune stages on the auxiliary set",
    "hijack_shadows": "hijack attack: shadow clients trained against h, h learns the backdoor on all of them",
    "hijack_gp": "hijack attack: weight of the discriminator's gradient penalty (WGAN-GP)",
    "hijack_d_lr": "hijack attack: discriminator learning rate (Adam)",
    "hijack_beta": "hijack attack: weight of the task gradient in what the client receives, in [0, 1]",
    "hijack_train_h": "hijack attack: the server's model keeps training during Implant (innocent and poisoned shadow batches)",
    "hijack_finetune": "hijack attack: who learns the backdoor in Finetune: h alone (shadows kept clean-trained) or both",
    "hijack_task_head": "hijack attack: the task gradient in Implant goes through the backdoored h or a frozen copy of h from the end of the warm-up (clean)",
    "hijack_critic": "hijack attack: discriminator conditional (on the class; shadow rows of the same class) or plain (FSHA's, no class)",
    "malicious_client": "client attack: index (0..K-1) of the client that poisons its own data",
    "trigger": "trigger kind: " + ", ".join(TRIGGERS),
    "blend_alpha": "blend trigger: weight of the noise image, in (0, 1]",
    "sig_delta": "sig trigger: amplitude of the sine, in pixel units of [0, 1]",
    "sig_freq": "sig trigger: number of sine periods across the image width",
    "device": "device: auto, cpu or cuda",
    "data_root": "folder holding the datasets (default $SLTUI_DATA or ~/.cache/sltui/data)",
    "train_limit": "use only N images of the train pool, drawn at random with the seed (quick runs)",
    "eval_limit": "use only N validation and N test images, drawn at random by a fixed seed, the same for every run (quick runs)",
    "eval_batch_size": "batch size for evaluation (default: sized to the model and device)",
    "save_weights": "store the final client and server weights (model.pt) beside the run file",
    "name": "free label for this run",
    "defenses": "client-side detectors, any of " + ", ".join(DEFENSES) + ", comma-separated (default none)",
    "splitguard_start": "SplitGuard: a client's first N batches are never fake and not scored (21: the authors' index > 20, 0-based)",
    "splitguard_fake_prob": "SplitGuard: probability that a batch after the start is a fake batch",
    "splitguard_window": "SplitGuard: flag when the mean score of this many last fake batches is below the threshold",
    "splitguard_memory": "SplitGuard: score on the last N fake batches and the regular ones since (0 = every batch, as published)",
    "splitguard_threshold": "SplitGuard: score threshold of the verdict",
    "scrutinizer_window": "Gradients Scrutinizer: steps per score",
    "scrutinizer_threshold": "Gradients Scrutinizer: flag when a window's score is below this (published: 0.5)",
    "splitout_share": "SplitOut: share of the client's data for its simulated honest epoch",
    "splitout_window": "SplitOut: gradients per window; flag when outliers outnumber inliers in one",
    "splitout_features": "SplitOut: what LOF compares, direction (gradients scaled to unit length) or raw (the published)",
    "splitout_fit": "SplitOut: fit LOF once before training (a deployed client) or per-epoch on each epoch's first gradients (the authors' evaluation)",
    "scrutinizer_form": "Gradients Scrutinizer: score the means of each window (windowed) or each checkpoint step itself (published)",
    "scrutinizer_std": "Gradients Scrutinizer: standard deviation of a step's pair similarities, population (as the authors) or sample (runs before)",
    "on_flag": "what the honest clients do at a detector's first flag: continue, or stop split learning and train a fresh server part locally",
    "local_epochs": "with --on-flag stop: epochs each honest client trains its local server part",
    "defense_trace": "record every detector's scores in its other settings too (for calibration); changes no result",
}


def _coerce(name: str, value: Any) -> Any:
    """Turn JSON values into the field's Python type (lists -> tuples)."""
    if name in ("lr_milestones", "defenses") and isinstance(value, list):
        return tuple(value)
    return value


def parse_milestones(text: str | None) -> tuple[int, ...] | None:
    """'25,40,55' -> (25, 40, 55); '' or 'none' -> () (constant LR); None -> None (default)."""
    if text is None:
        return None
    text = text.strip().lower()
    if text in ("", "none", "constant"):
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--lr-milestones must be comma-separated epochs like 26,41,56,71 (got {text!r})") from None


def parse_defenses(text: str | None) -> tuple[str, ...] | None:
    """'splitguard,splitout' -> ('splitguard', 'splitout'); '' or 'none' -> (); None -> None."""
    if text is None:
        return None
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    return tuple(part.strip() for part in text.split(","))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_type(cfg: RunConfig) -> None:
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        expected = f.type
        if value is None and "None" in str(expected):
            continue
        if "bool" in str(expected):
            ok = isinstance(value, bool)
        elif "int" in str(expected) and "tuple" not in str(expected):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif "float" in str(expected):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif "tuple[str" in str(expected):
            ok = isinstance(value, tuple) and all(isinstance(v, str) for v in value)
        elif "tuple" in str(expected):
            ok = isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(f"{_flag(f.name)} has the wrong type: {value!r} ({FIELD_HELP[f.name]})")


# The largest value of each integer field: past these a run could not finish (epochs), a
# number no longer fits the 64-bit integers torch takes (seeds, sizes) or a run would
# build networks without end (clients, shadows). Every other integer field: INT_CEILING.
MAX_EPOCHS = 100_000
MAX_SEED = 2**32 - 1
INT_CEILING = 2**31 - 1
INT_CEILINGS: dict[str, int] = {
    "epochs": MAX_EPOCHS, "patience": MAX_EPOCHS, "ae_phase1_epochs": MAX_EPOCHS, "ae_epochs": MAX_EPOCHS,
    "hijack_warmup_epochs": MAX_EPOCHS, "hijack_shadow_epochs": MAX_EPOCHS,
    "seed": MAX_SEED, "trigger_seed": MAX_SEED, "clients": 1000, "hijack_shadows": 100,
}
SEED_FIELDS = ("seed", "trigger_seed")


def _check_ranges(cfg: RunConfig) -> None:
    """Every integer field (and LR milestone) no larger than its ceiling, seeds not negative."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        high = INT_CEILINGS.get(f.name, INT_CEILING)
        if value > high:
            raise ConfigError(f"{_flag(f.name)} must be at most {high} (got {value})")
    for name in SEED_FIELDS:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{_flag(name)} must be in 0..{MAX_SEED} (got {getattr(cfg, name)})")
    for milestone in cfg.lr_milestones or ():
        if not 0 <= milestone <= MAX_EPOCHS:
            raise ConfigError(f"--lr-milestones must be epochs in 0..{MAX_EPOCHS} (got {milestone})")


def validate(cfg: RunConfig) -> RunConfig:
    """Raise ConfigError with one line naming the flag and the fix; return cfg unchanged."""
    _check_type(cfg)
    _check_ranges(cfg)

    def choice(name: str, allowed: tuple) -> None:
        value = getattr(cfg, name)
        if value not in allowed:
            raise ConfigError(
                f"{_flag(name)} must be one of {', '.join(map(str, allowed))} (got {value!r})"
            )

    def at_least(name: str, low: int, optional: bool = False) -> None:
        value = getattr(cfg, name)
        if optional and value is None:
            return
        if value < low:
            raise ConfigError(f"{_flag(name)} must be >= {low} (got {value})")

    def unit(name: str, low_open: bool, high_closed: bool = True) -> None:
        value = getattr(cfg, name)
        low_ok = value > 0 if low_open else value >= 0
        high_ok = value <= 1 if high_closed else value < 1
        if not (low_ok and high_ok):
            interval = ("(" if low_open else "[") + "0, 1" + ("]" if high_closed else ")")
            raise ConfigError(f"{_flag(name)} must be in {interval} (got {value})")

    choice("dataset", DATASETS)
    choice("model", MODELS)
    choice("cut", CUTS)
    choice("attack", ATTACKS)
    choice("rr_granularity", RR_GRANULARITIES)
    choice("ae_grad", AE_GRADS)
    choice("ae_variant", AE_VARIANTS)
    choice("hijack_critic", HIJACK_CRITICS)
    choice("hijack_finetune", HIJACK_FINETUNE)
    choice("hijack_task_head", HIJACK_TASK_HEADS)
    choice("device", DEVICES)
    choice("trigger", TRIGGERS)
    choice("trigger_rng", TRIGGER_RNGS)
    at_least("clients", 1)
    unit("alpha", low_open=True)
    unit("poison_ratio", low_open=False)
    unit("ae_share", low_open=False)
    at_least("epochs", 1, optional=True)
    at_least("batch_size", 1)
    at_least("eval_batch_size", 1, optional=True)
    at_least("patience", 0, optional=True)
    at_least("ae_phase1_epochs", 1, optional=True)
    at_least("ae_epochs", 1, optional=True)
    at_least("train_limit", 1, optional=True)
    at_least("aux_size", 1, optional=True)
    at_least("hijack_warmup_epochs", 0, optional=True)
    at_least("hijack_shadow_epochs", 1)
    at_least("hijack_shadows", 1)
    at_least("malicious_client", 0)
    unit("hijack_beta", low_open=False)
    unit("blend_alpha", low_open=True)
    if cfg.hijack_gp < 0:
        raise ConfigError(f"--hijack-gp must be >= 0 (got {cfg.hijack_gp})")
    if cfg.hijack_d_lr <= 0:
        raise ConfigError(f"--hijack-d-lr must be > 0 (got {cfg.hijack_d_lr})")
    if not 0 < cfg.sig_delta <= 1:
        raise ConfigError(f"--sig-delta must be in (0, 1] (got {cfg.sig_delta})")
    if cfg.sig_freq <= 0:
        raise ConfigError(f"--sig-freq must be > 0 (got {cfg.sig_freq})")
    if cfg.malicious_client >= cfg.clients:
        raise ConfigError(f"--malicious-client must be a client index in 0..{cfg.clients - 1} "
                          f"(got {cfg.malicious_client} with --clients {cfg.clients})")
    if (cfg.attack == "hijack" and cfg.epochs is not None and cfg.hijack_warmup_epochs is not None
            and cfg.hijack_warmup_epochs >= cfg.epochs):
        raise ConfigError(f"--hijack-warmup-epochs must be below --epochs ({cfg.epochs}) "
                          f"or the attack never starts (got {cfg.hijack_warmup_epochs})")
    at_least("eval_limit", 1, optional=True)
    at_least("trigger_size", 1)
    at_least("trigger_row", 0)
    at_least("trigger_col", 0, optional=True)
    for name in cfg.defenses:
        if name not in DEFENSES:
            raise ConfigError(f"--defenses must name detectors among {', '.join(DEFENSES)} (got {name!r})")
    if len(set(cfg.defenses)) != len(cfg.defenses):
        raise ConfigError("--defenses names a detector twice")
    at_least("splitguard_start", 0)
    unit("splitguard_fake_prob", low_open=True, high_closed=False)
    at_least("splitguard_window", 1)
    at_least("splitguard_memory", 0)
    if cfg.splitguard_memory == 1:
        raise ConfigError("--splitguard-memory 1 keeps no regular batch to score against; use 0 (everything) or >= 2")
    choice("scrutinizer_form", SCRUTINIZER_FORMS)
    choice("scrutinizer_std", SCRUTINIZER_STDS)
    choice("on_flag", ON_FLAG)
    at_least("local_epochs", 1)
    if cfg.defenses and not honest_clients(cfg):
        raise ConfigError(f"--defenses {','.join(cfg.defenses)} needs an honest client to run in: with "
                          "--attack client and --clients 1 the only client is the attacker (use --clients 2 or more)")
    if cfg.on_flag == "stop" and not (cfg.defenses and honest_clients(cfg)):
        raise ConfigError("--on-flag stop reacts to a detector's flag: give --defenses, and an honest client to run them")
    unit("splitguard_threshold", low_open=False)
    at_least("scrutinizer_window", 2)
    unit("scrutinizer_threshold", low_open=False)
    unit("splitout_share", low_open=True)
    at_least("splitout_window", 1)
    choice("splitout_features", SPLITOUT_FEATURES)
    choice("splitout_fit", SPLITOUT_FITS)
    if cfg.lr <= 0:
        raise ConfigError(f"--lr must be > 0 (got {cfg.lr})")
    if cfg.weight_decay < 0:
        raise ConfigError(f"--weight-decay must be >= 0 (got {cfg.weight_decay})")
    if not 0 < cfg.lr_gamma <= 1:
        raise ConfigError(f"--lr-gamma must be in (0, 1] (got {cfg.lr_gamma})")
    if cfg.lr_milestones is not None and list(cfg.lr_milestones) != sorted(set(cfg.lr_milestones)):
        raise ConfigError("--lr-milestones must be increasing epochs like 26,41,56,71")
    classes = 5 if cfg.dataset == "fmnist-5" else 10
    if not 0 <= cfg.target < classes:
        raise ConfigError(f"--target must be a class in 0..{classes - 1} (got {cfg.target})")
    side = 32 if cfg.dataset in CIFAR_LIKE else 28
    col = cfg.trigger_col if cfg.trigger_col is not None else side // 2 - cfg.trigger_size // 2
    if cfg.trigger_row + cfg.trigger_size > side or col + cfg.trigger_size > side:
        raise ConfigError(
            f"the {cfg.trigger_size}x{cfg.trigger_size} trigger at row {cfg.trigger_row}, column {col} "
            f"does not fit a {side}x{side} image; lower --trigger-size, --trigger-row or --trigger-col"
        )
    return cfg


def honest_clients(cfg: RunConfig | dict[str, Any]) -> list[int]:
    """Indices (0-based) of the clients that run the detectors: all of them, but the
    malicious one of the `client` attack (none when it is the only client). Takes a
    RunConfig or a stored config dict."""
    get = cfg.get if isinstance(cfg, dict) else lambda name, default=None: getattr(cfg, name, default)
    clients = int(get("clients", 1) or 1)
    if get("attack") == "client":
        bad = int(get("malicious_client", 0) or 0)
        return [k for k in range(clients) if k != bad]
    return list(range(clients))


def attack_start_epoch(cfg: RunConfig | dict[str, Any]) -> int | None:
    """The first epoch (from 1) in which the server is malicious (docs/protocol.md section
    11): the surrogate and the autoencoder from the first, the hijack after its warm-up;
    None when the server stays honest (`none`, and `client`, where a client attacks)."""
    get = cfg.get if isinstance(cfg, dict) else lambda name, default=None: getattr(cfg, name, default)
    attack = get("attack")
    if attack in ("surrogate", "autoencoder"):
        return 1
    if attack == "hijack":
        warmup = get("hijack_warmup_epochs", 2)  # a config without the field is from before its default moved
        return int(warmup if warmup is not None else default_hijack_warmup(str(get("dataset")))) + 1
    return None


def default_hijack_warmup(dataset: str, epochs: int | None = None) -> int:
    """The hijack's honest warm-up per dataset, from the grid's evidence (docs/attacks.md):
    on MNIST 6 epochs keep CDA within 3 points of clean where 2 do not; on FMNIST 12 reach
    ASR >= 95% where 2 reach 60-83%; elsewhere (no evidence yet) 2. At most `epochs` - 1,
    so that the attack starts."""
    warmup = 6 if dataset in ("mnist", "mnist-10k", "emnist-letters-aj") else 12 if dataset in ("fmnist", "fmnist-5") else 2
    return max(0, min(warmup, epochs - 1)) if epochs is not None else warmup


def default_epochs(dataset: str) -> int:
    return 140 if dataset in CIFAR_LIKE else 90


def default_patience(dataset: str) -> int:
    return 90 if dataset in CIFAR_LIKE else 70


def default_milestones(model: str) -> tuple[int, ...]:
    """The 0-based epochs from which the LR factor drops once more. The authors' LambdaLR
    changes its factor when the epoch index e > 25, 40, 55, 70 (ResNet9: 20, 30, 40, 50),
    so the first epoch at x0.1 has index 26 (the 27th epoch). Runs before 2026-12 used
    the paper's numbers as indices (one epoch earlier); their files store the milestones
    they used."""
    return (21, 31, 41, 51) if model == "resnet9" else (26, 41, 56, 71)


def spec_defaults(cfg: RunConfig) -> dict[str, Any]:
    """The protocol's value (docs/protocol.md) of every field whose default depends on the dataset, the model or the
    trigger size: the one table that :func:`resolve` fills from and a clone re-resolves."""
    cifar = cfg.dataset in CIFAR_LIKE
    side = 32 if cifar else 28
    return {
        "epochs": default_epochs(cfg.dataset),
        "patience": default_patience(cfg.dataset),
        "lr_milestones": default_milestones(cfg.model),
        "trigger_col": side // 2 - cfg.trigger_size // 2,
        "ae_phase1_epochs": 100 if cifar else 70,
        "ae_epochs": 180 if cifar else 100,
        "hijack_warmup_epochs": default_hijack_warmup(cfg.dataset, cfg.epochs if cfg.epochs is not None
                                                      else default_epochs(cfg.dataset)),
    }


DEPENDENT_FIELDS: tuple[str, ...] = tuple(spec_defaults(RunConfig()))


def resolve(cfg: RunConfig) -> RunConfig:
    """Fill every None default with the concrete default (docs/protocol.md) for this dataset and model."""
    validate(cfg)
    defaults = spec_defaults(cfg)
    return dataclasses.replace(cfg, **{k: v for k, v in defaults.items() if getattr(cfg, k) is None})


def resolved_fields(cfg: RunConfig) -> list[str]:
    """The fields :func:`resolve` fills in for `cfg` (those left None). A run file records
    them (``config_resolved``) so that a clone on another dataset or model resolves them
    again instead of keeping values that were only the old dataset's defaults."""
    return [name for name in DEPENDENT_FIELDS if getattr(cfg, name) is None]


def lr_multiplier(cfg: RunConfig, epoch: int) -> float:
    """Multiplier of the base LR in 0-indexed `epoch`: gamma ** (milestones m with epoch >= m)."""
    milestones = cfg.lr_milestones if cfg.lr_milestones is not None else default_milestones(cfg.model)
    return cfg.lr_gamma ** sum(1 for m in milestones if epoch >= m)


# ---------------------------------------------------------------- a stored run's config as the user chose it
# A stored run's config as the user chose it: the base of a clone or of `--config run.json`.
#
# A run file's ``config`` holds the concrete values the run used, including those that
# :func:`engine.config.resolve` filled from the dataset/model defaults (epochs, patience,
# LR milestones, trigger column, autoencoder epochs). Cloning an MNIST LeNet run as CIFAR-10
# ResNet9 must not keep MNIST's 90 epochs, so a clone keeps only the user's fields and leaves
# the others unset, to be resolved again for the new dataset and model.
#
# Which fields were resolved is read from the run file's ``config_resolved`` list. Run files
# written before that list existed are read by inference: a default-dependent field counts
# as resolved when its value equals the default for that run's dataset, model and trigger
# size. A user who typed the default value explicitly then gets the new dataset's default
# too, which is what a clone to another dataset almost always wants; on the same dataset
# the value is the same either way.

def resolved_in(doc: Mapping[str, Any]) -> list[str]:
    """The config fields of run document `doc` that were resolved from defaults."""
    recorded = doc.get("config_resolved")
    if isinstance(recorded, list):
        return [name for name in recorded if name in DEPENDENT_FIELDS]
    config = doc.get("config") or {}
    try:
        defaults = spec_defaults(stored_config(dict(config)))
    except (ConfigError, TypeError):
        return []  # an unreadable config: keep it whole, its reader reports the problem
    return [name for name, value in defaults.items() if _same(config.get(name), value)]


def user_config(doc: Mapping[str, Any]) -> dict[str, Any]:
    """`doc`'s config without the fields resolved from defaults (see the module docstring).
    A field the file does not hold, whose value before it existed (LEGACY_VALUES) is not
    today's default, is given that older value: a clone of an older run keeps its trigger
    pattern, say. An unreadable config is kept whole (its reader reports the problem)."""
    resolved = set(resolved_in(doc))
    config = dict(doc.get("config") or {})
    try:
        stored_config(config)
    except (ConfigError, TypeError):
        return config
    today = RunConfig().to_dict()
    legacy = {k: v for k, v in LEGACY_VALUES.items()
              if k not in config and k not in resolved and v is not None and today.get(k, v) != v}
    return {**legacy, **{k: v for k, v in config.items() if k not in resolved}}


def _same(stored: Any, default: Any) -> bool:
    if isinstance(default, tuple):
        return isinstance(stored, (list, tuple)) and tuple(stored) == default
    return stored == default and type(stored) is type(default)
