"""fer-emotion: the desktop app and its headless core."""

__version__ = "0.1.0"
