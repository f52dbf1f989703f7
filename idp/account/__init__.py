"""The citizen's own pages: profile, sessions, security, consents and activity."""
