"""`llmct`'s user commands: a client of the gateway's public API (HTTP and WebSocket) and nothing else.

It imports no service code (an import-linter contract says so): what it knows of the platform is the API's
documented shapes, so it works against any gateway, from any machine, with only an API key.
"""
