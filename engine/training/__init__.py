"""Training: the split-learning protocol and its step (protocol.py), one run from config
to final metrics (runner.py), evaluation (metrics.py), whole-network training for the
attacker's own networks (local_training.py) and the transfer check (transfer.py)."""
