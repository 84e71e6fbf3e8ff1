"""agentr-kit: Agent-R (arXiv 2501.11425) end to end — MCTS collection, self-critique revision, masked SFT,
evaluation — as a thin library behind one notebook per stage."""
__version__ = "0.1.0"

# layout.py tells a corrupt artefact's message which stage redoes it (files.CorruptArtefact.redo_hint)
from . import layout  # noqa: E402,F401
