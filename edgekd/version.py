"""The package version, in a module of its own: any module can record it without importing the package root
(whose Python API imports the whole pipeline)."""

__version__ = "0.1.0"
