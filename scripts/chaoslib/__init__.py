"""The parts of ``scripts/chaos.py``: workers (the supervisor), checks, and the report."""
