"""sltui: the command line and terminal UI over the engine; `load_runs` and `load_epochs`
give the runs as pandas DataFrames (sltui.runs.notebook), without importing Textual or torch."""
from engine import __version__

__all__ = ["__version__", "load_runs", "load_epochs"]


def __getattr__(name: str):
    # Loaded on first use, so `import sltui` (every CLI command) does not import pandas.
    if name in ("load_runs", "load_epochs"):
        from .runs import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'sltui' has no attribute {name!r}")
