"""Evaluations: views over evaluation jobs, their samples and side-by-side comparisons (/api/evals)."""
