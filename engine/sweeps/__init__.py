"""Grids of runs: the grid and its experiment keys (grid.py), the executors that run it in
worker processes or on Ray (executors.py, worker.py), and the mean and spread over seeds
(aggregate.py). Orchestration only: subprocesses, signals and Ray stay out of training."""
