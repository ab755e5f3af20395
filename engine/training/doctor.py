"""`sltui doctor`: what a user checks first on a new node, as a list of findings.

Each finding is one line: ``ok`` (information), ``warning`` (something a run may need,
e.g. a dataset that is not there yet but can be downloaded) or ``error`` (a run could not
start: torch does not import, the runs folder cannot be written, ``--device cuda`` without
a visible GPU, or the trial training step fails). The caller prints them and exits non-zero
when any is an error.

With an explicit device the doctor also trains one epoch of a tiny synthetic run on it
through :func:`engine.training.runner.run`, into a temporary runs folder: the same code path as a
real run, so a broken CUDA setup shows up here rather than an hour into a queue job.

Torch is imported inside the checks, so a torch that fails to load (a CUDA library
mismatch, say) is reported as a finding instead of a traceback.
"""
from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..files import check_folder_creatable
from ..speed.cores import available_cores

DATASETS = ("mnist", "fmnist", "cifar10", "cifar10-jpeg", "emnist-letters-aj")
"""The datasets on disk the doctor looks for (the variants mnist-10k, fmnist-5 read the same files)."""

LEVELS = ("ok", "warning", "error")


@dataclass(frozen=True)
class Finding:
    level: str   # one of LEVELS
    topic: str   # what was checked: python, torch, cuda, gpu 0, mnist, runs folder, ...
    text: str

    @property
    def problem(self) -> bool:
        return self.level != "ok"


def check_python() -> Iterator[Finding]:
    yield Finding("ok", "python", f"{platform.python_version()} ({sys.executable})")


def check_torch() -> Iterator[Finding]:
    try:
        import torch
    except Exception as exc:  # ImportError, or OSError from a CUDA library that does not load
        yield Finding("error", "torch", f"does not import: {type(exc).__name__}: {_first_line(exc)}")
        return
    yield Finding("ok", "torch", f"{torch.__version__} (built for CUDA {torch.version.cuda or 'none: CPU only'})")


def check_cuda(device: str | None) -> Iterator[Finding]:
    """CUDA availability and each GPU with its memory; an error only for --device cuda."""
    import torch

    if not torch.cuda.is_available():
        if device == "cuda":
            yield Finding("error", "cuda", "--device cuda: no CUDA GPU is visible here; use --device cpu (or auto)")
        elif torch.version.cuda:
            yield Finding("ok", "cuda", "no GPU visible (this torch supports CUDA: check the driver and "
                                        "CUDA_VISIBLE_DEVICES on a GPU node); runs use the CPU")
        else:
            yield Finding("ok", "cuda", "this torch is CPU only; runs use the CPU")
        return
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    yield Finding("ok", "cuda", f"{torch.cuda.device_count()} GPU(s), driver API CUDA {torch.version.cuda}, "
                                f"cuDNN {cudnn or 'not available'}")
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        try:
            free, total = torch.cuda.mem_get_info(index)
            memory = f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
        except RuntimeError as exc:  # a GPU in exclusive mode held by another process
            memory = f"{props.total_memory / 2**30:.1f} GiB (free unknown: {_first_line(exc)})"
        yield Finding("ok", f"gpu {index}", f"{props.name}, {memory}, compute capability {props.major}.{props.minor}")


def check_threads() -> Iterator[Finding]:
    import torch

    omp = os.environ.get("OMP_NUM_THREADS")
    yield Finding("ok", "threads", f"torch uses {torch.get_num_threads()} intra-op thread(s); "
                                   f"{available_cores()} core(s) available"
                                   + (f" (OMP_NUM_THREADS={omp})" if omp else ""))


def check_numba() -> Iterator[Finding]:
    from ..speed import fallbacks, kernels

    if kernels.usable():
        yield Finding("ok", "numba", f"{kernels.numba.__version__}: the compiled CPU kernels are on")
    elif kernels.AVAILABLE:
        yield Finding("ok", "numba", f"{kernels.numba.__version__}: the compiled CPU kernels are off "
                                     f"({fallbacks.ENV} is set)")
    else:
        yield Finding("warning", "numba", "not installed or does not load: the compiled CPU kernels are off "
                                          "(CPU runs are slower, results the same); install the fast extra: "
                                          "pip install -e '.[fast]'")


def data_root_and_source(data_root: str | None) -> tuple[Path, str]:
    from ..data.datasets import default_data_root

    if data_root:
        return Path(data_root).expanduser(), "--data-root"
    return default_data_root(), "$SLTUI_DATA" if os.environ.get("SLTUI_DATA") else "the default"


def check_datasets(data_root: str | None) -> Iterator[Finding]:
    """Each dataset found or not under the data root, and where it would be downloaded.
    A missing dataset is a warning: torchvision downloads most of them on first use."""
    from ..data.datasets import DOWNLOADABLE, dataset_folder, missing_files

    root, source = data_root_and_source(data_root)
    if root.is_dir():
        yield Finding("ok", "data root", f"{root} (from {source})")
    elif root.exists():
        yield Finding("warning", "data root", f"{root} (from {source}) is not a folder; pass --data-root")
    else:
        yield Finding("warning", "data root", f"{root} (from {source}) does not exist yet")
    for dataset in DATASETS:
        folder = dataset_folder(dataset, root)
        missing = missing_files(dataset, root)
        if not missing:
            yield Finding("ok", dataset, f"found in {folder}")
        elif dataset in DOWNLOADABLE:
            yield Finding("warning", dataset, f"not found ({missing[0]} missing in {folder}); a run downloads it "
                                              f"there (needs network), or pass --data-root to a folder holding it")
        else:
            yield Finding("warning", dataset, f"not found ({missing[0]} missing in {folder}) and it cannot be "
                                              f"downloaded: copy the image folder there or pass --data-root")


def check_runs_dir(runs_dir: Path) -> Iterator[Finding]:
    """The runs folder can hold run files: it is a folder in which a folder (a run's) can
    be made, or it does not exist yet and one can be made where it would be
    (engine.files.check_folder_creatable: tried, changing nothing)."""
    problem = check_folder_creatable(runs_dir)
    if problem is not None:
        yield Finding("error", "runs folder", f"{runs_dir} cannot hold runs: {problem}; "
                                              f"pass --runs-dir to a writable folder")
    elif runs_dir.is_dir():
        yield Finding("ok", "runs folder", f"{runs_dir} is writable")
    else:
        yield Finding("ok", "runs folder", f"{runs_dir} does not exist yet; the first run creates it")


def check_training_step(device: str) -> Iterator[Finding]:
    """One epoch of a tiny synthetic run on `device` through the engine's run path."""
    from ..config import RunConfig
    from ..errors import ConfigError, DataError
    from .runner import run
    from ..store import RunStore

    cfg = RunConfig(dataset="synthetic", model="lenet", clients=1, epochs=1, batch_size=64, train_limit=256,
                    eval_limit=128, device=device, save_weights=False, name="sltui doctor")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sltui-doctor-") as runs:
        try:
            result = run(cfg, RunStore(Path(runs)).recorder(), run_id="doctor")
        except (ConfigError, DataError, OSError, RuntimeError) as exc:
            yield Finding("error", "training step", f"on {device}: could not start: {_first_line(exc)}")
            return
    if result.status != "completed":
        yield Finding("error", "training step", f"on {device}: {result.status}: {_first_line(result.error)}")
        return
    yield Finding("ok", "training step", f"one synthetic epoch on {_device_label(device)} in "
                                         f"{time.perf_counter() - started:.1f} s (CDA {result.final['cda']:.0f}%)")


def diagnose(data_root: str | None, runs_dir: Path, device: str | None = None) -> Iterator[Finding]:
    """Every check in turn. `device` None checks what is there; cpu, cuda or auto also
    trains one tiny step on that device."""
    yield from check_python()
    torch_findings = list(check_torch())
    yield from torch_findings
    torch_ok = not any(f.level == "error" for f in torch_findings)
    if torch_ok:
        yield from check_cuda(device)
        yield from check_threads()
        yield from check_numba()
        yield from check_datasets(data_root)
    yield from check_runs_dir(runs_dir)
    if torch_ok and device is not None:
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            return  # check_cuda has said why
        yield from check_training_step(device)


def _device_label(device: str) -> str:
    from ..speed.device import device_name, resolve_device

    resolved: Any = resolve_device(device)
    return f"{resolved} ({device_name(resolved)})" if resolved.type == "cuda" else "cpu"


def _first_line(value: Any) -> str:
    text = str(value or "").strip()
    return text.splitlines()[0][:200] if text else type(value).__name__
