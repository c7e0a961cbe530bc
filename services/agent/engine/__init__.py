"""Files the agent hands to the engine, run by the engine's own interpreter (never imported by the platform)."""
