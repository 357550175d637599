"""A job's checkpoints: listed from its events, downloadable where kept as an artifact."""
