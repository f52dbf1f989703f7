"""Second factors (TOTP, passkeys, codes to the verified phone or email, recovery codes) and step-up."""
