"""A fake Jira, Cloud or Data Center flavoured, served over real HTTP on loopback."""

from integrations.sandbox.jira.app import JiraSandbox, SearchRecord
from integrations.sandbox.jira.data import SandboxIssue
from integrations.sandbox.jira.faults import Faults

__all__ = ["Faults", "JiraSandbox", "SandboxIssue", "SearchRecord"]
