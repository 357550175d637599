"""Web dashboard served at /dashboard (pages + own JS/CSS; data from the /v1 API)."""
