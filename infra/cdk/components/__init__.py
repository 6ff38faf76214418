"""Reusable constructs; each takes keyword-only, typed, frozen props."""
