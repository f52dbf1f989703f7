"""Consent records and the consent screen (what a citizen shares with which portal)."""
