"""Registration: a resident of the population registry opens their SatuID account (pages)."""
