"""tableside: a real-time session server for restaurant tables."""

__version__ = "0.1.0"
