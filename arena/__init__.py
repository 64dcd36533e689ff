"""A small, honest LLM arena: anonymous battles, stored votes, Bradley-Terry rankings."""

__version__ = "0.1.0"
