"""Example relying parties: two government service portals that sign citizens in with SatuID.

They use only a stock OpenID Connect client (Authlib's Flask client) and discovery, and never import
``idp``: pointing ``SATUID_ISSUER`` (and the client credentials) at another standard OpenID Provider is
the only change needed to use them elsewhere.
"""
