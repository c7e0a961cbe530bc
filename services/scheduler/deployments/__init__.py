"""Deployments: a model served on an agent as a job of kind 'deploy' (/api/deployments)."""
