"""The seam between station logic and its hardware: one interface, several backends (sim now, serial later)."""
