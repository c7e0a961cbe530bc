"""The fleet: agents, their heartbeats and resource history, and the upkeep of silent ones (/api/agents)."""
