"""Reports written from run files, for the command line and the docs: a sweep's figures
and table (sweep.py), an arena's matrix (arena.py), the reproduction's cells, figures and
document (reproduction.py)."""
