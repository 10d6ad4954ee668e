"""Small Trio helpers the station's tasks share."""
