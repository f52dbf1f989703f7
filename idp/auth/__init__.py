"""Login, SSO sessions, second factors, levels of assurance and lockout."""
