"""Deleting finished jobs and single artifacts, with their stored bytes."""
