"""Persistence shared by api/ and worker/: settings, ORM models, repositories, artifact store.

Nothing here imports FastAPI or Celery.
"""
