"""facefix: plugin-based blind face restoration."""

__version__ = "0.1.0"
