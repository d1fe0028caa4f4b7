"""Velocity features: one definition (velocity.py), online state stores (store.py)."""
