"""Celery worker: claims jobs from Postgres under a lease and runs the clo pipeline stages."""
