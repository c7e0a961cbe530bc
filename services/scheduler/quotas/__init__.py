"""Quotas: per-user limits on GPUs, queued jobs and deployments (/api/quotas)."""
