"""Outbound webhooks: signing, the SSRF guard, one HTTP delivery, and the outbox drain."""
