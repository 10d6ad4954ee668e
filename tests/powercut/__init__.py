"""Power-cut tests: a lossy VFS (apsw) that drops every write not yet fsynced, driven by the real journal."""
