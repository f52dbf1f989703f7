"""gunicorn settings read from the working directory: redacted access logs, sane timeouts."""

import os

logger_class = "idp.logs.RedactingLogger"
bind = os.environ.get("IDP_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("IDP_WORKERS", str((os.cpu_count() or 1) * 2)))
timeout = 30
graceful_timeout = 20
forwarded_allow_ips = os.environ.get("IDP_FORWARDED_ALLOW_IPS", "127.0.0.1")
