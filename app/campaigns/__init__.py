"""Segments of a program's members and the campaigns sent to them."""
