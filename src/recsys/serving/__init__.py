"""Packaging (bundle, store) and the BentoML service."""
