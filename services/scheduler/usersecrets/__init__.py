"""Users' secrets (/api/secrets): credentials their jobs are given, encrypted at rest, never shown again; and the
answer to an agent that asks for the secrets of a job it runs (docs/architecture.md, "User secrets")."""
