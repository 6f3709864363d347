"""Runnable example pipelines built only on the public SDK API.

They double as end-to-end tests of the SDK on real data: ``faces`` runs the
seed README's Detection → Analysis → Completion pipeline on a shipped photo.
"""
