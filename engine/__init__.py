"""sltui's engine: split learning, the server-side backdoor attacks and their metrics.

No UI imports here (checked by tests/test_layering.py)."""
__version__ = "0.1.0"
