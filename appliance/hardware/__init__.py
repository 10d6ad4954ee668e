"""The seam between station logic and its hardware: capabilities a backend composes (base.py), the registry
that picks the configured backend (registry.py), and the backends (sim/ now, serial later)."""
