"""Dramatiq actors, one module per component. Import `actors.broker` first: it sets the one broker."""
