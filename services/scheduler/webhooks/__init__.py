"""Signed webhooks: endpoints users register, an outbox filled in the transactions that change state, and the
worker that delivers it (docs/webhooks.md)."""
