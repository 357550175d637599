"""Webhook endpoints of a tenant: register, list, delete, test; the delivery log."""
