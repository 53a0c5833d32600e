"""Backends: ``local`` (torch + transformers) and ``remote`` (httpx). Imported lazily."""
