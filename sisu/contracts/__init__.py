"""Pydantic models: the one definition of every request, response and error sisu emits."""
