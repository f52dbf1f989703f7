"""WSGI entry point: ``gunicorn wsgi:app`` or ``flask --app wsgi ...``."""

from idp import create_app

app = create_app()
