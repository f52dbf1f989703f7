"""OpenID Connect provider on Authlib: grants, endpoints, claims, pairwise subjects, keys, logout."""
