"""The services home (``/``, ``/layanan``): every portal that trusts SatuID, by life event and need,
with its sign-in, its complaint channel and the citizens' ratings."""
