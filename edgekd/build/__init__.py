"""Build stage: the engine plan per profile and the converters (engines.py); what an artifact is (artifacts.py)."""
