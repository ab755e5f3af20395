"""The terminal UI: the app and its stylesheet, the screens and widgets, the run manager
that drives runs in threads, and the models behind the screens (runs_model, form_model)."""
