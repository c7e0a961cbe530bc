"""The tiny Llama and its datasets, made locally so a fresh stack can train at once without a model hub.

`make_model` runs in the engine's own interpreter (.venv-engine) and `data` in any: both import nothing of
the platform. `llmct.bootstrap` builds them and registers them with the registry and datasets services.
"""
