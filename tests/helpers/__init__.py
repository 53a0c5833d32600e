"""Shared test helpers: tiny model factories and the loopback rerank server."""
