"""sltui: the command line and terminal UI over the engine."""
from engine import __version__

__all__ = ["__version__"]
