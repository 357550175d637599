"""Exports of a succeeded job (a plain LoRA, a merged model), run by a worker."""
