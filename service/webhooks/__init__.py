"""Signed webhooks on job state changes: event payloads, signatures, delivery with retries."""
