"""Views of a runs folder, shared by the command line, the terminal UI and notebooks: the
run index (index.py: summaries cached in `.index.sqlite`, short ids), the filter language
(query.py), tags and notes (annotations.py), the trash (trash.py), the notebook API
(notebook.py: load_runs, load_epochs) and starting a run on a thread with its events wired
to the store (threads.py, which imports the engine and torch). None of them imports Textual;
only threads.py imports torch."""
