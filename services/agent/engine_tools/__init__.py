"""Tools the engine's own interpreter (.venv-engine) runs: keep them free of platform imports."""
