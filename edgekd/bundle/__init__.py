"""Bundle stage: the portable folder or archive a device profiles (files.py) and the checks that make it safe to
trust (checks.py)."""
