"""The data: datasets and their splits (datasets.py), the trigger and poisoning
(trigger.py), and the splits normalised and stamped once per run (prepared.py)."""
