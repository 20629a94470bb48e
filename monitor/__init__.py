"""sse-monitor: a synthetic monitor for Server-Sent Events streaming endpoints, LLM APIs first."""

__version__ = "0.1.0"
