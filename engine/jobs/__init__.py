"""Performing jobs: handlers per job kind, retries with backoff, and the runners (in memory here; durable in the daemon)."""

from ruledesk.engine.jobs.memory import JobRun, MemoryRunner

__all__ = ["JobRun", "MemoryRunner"]
