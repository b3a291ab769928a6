"""Linear: a GraphQL client on httpx, the pure mapping, and the adapter the sync engine uses."""

from integrations.linear.adapter import LinearAdapter

__all__ = ["LinearAdapter"]
