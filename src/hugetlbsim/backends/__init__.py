"""Backends that run scenario steps: the model and the live kernel, behind one interface."""
