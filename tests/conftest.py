import os

import pytest
import torch

# Tests run on the CPU with synthetic data; keep them deterministic and light on 2 cores.
os.environ.setdefault("SLTUI_CACHE", "/tmp/sltui-test-cache")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny():
    """A fast config on the synthetic dataset."""
    from engine.config import RunConfig

    return RunConfig(dataset="synthetic", epochs=1, train_limit=600, eval_limit=200, device="cpu")
