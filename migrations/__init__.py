"""Numbered SQL migrations of the station journal, shipped as package data `appliance._migrations`."""
