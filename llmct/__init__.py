"""The composition root: the `llmct` command, the local launcher, embedded servers and the tiny model.

The only package that may import every service; no service imports it (import-linter checks both).
"""
