"""Screens of the terminal UI: new run, live run, runs browser, compare, help."""
