"""User-facing errors: one-line messages saying what is wrong and how to fix it.
Kept free of torch so the command line can import them cheaply."""


class ConfigError(ValueError):
    """A config value that cannot run."""


class DataError(RuntimeError):
    """The data a run needs is missing or unreadable."""
