"""HTTP endpoints of the OpenID Provider."""
