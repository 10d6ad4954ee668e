"""Torture tests: a real station process under cable pulls, pulled veth links and SIGKILLs (issue 3)."""
