"""The PySide6 desktop app. All Qt code lives in this package."""
