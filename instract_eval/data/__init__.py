"""Readers for the on-disk formats the harness consumes, with validation that names file and field."""
