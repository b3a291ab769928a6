"""A fake Linear for the demo, the tests and the benchmarks; see `app` for what it models."""

from integrations.sandbox.linear.app import DEFAULT_API_KEY, Faults, LinearSandbox, Quota

__all__ = ["DEFAULT_API_KEY", "Faults", "LinearSandbox", "Quota"]
