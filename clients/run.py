"""Start an example portal: ``python -m clients.run health --port 5001`` (or ``social --port 5002``).

The issuer comes from ``SATUID_ISSUER`` (default http://127.0.0.1:5000); the client credentials from
``HEALTH_CLIENT_ID``/``HEALTH_CLIENT_SECRET`` or ``SOCIAL_CLIENT_ID``/``SOCIAL_CLIENT_SECRET``, defaulting
to the demo values ``flask seed-demo`` registers.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from importlib import import_module

PORTALS = ("health", "social")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m clients.run", description=__doc__.splitlines()[0])
    parser.add_argument("portal", choices=PORTALS)
    parser.add_argument("--host", default=os.environ.get("PORTAL_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--base-url", default=None,
                        help="public URL of the portal (default http://<host>:<port>, or <NAME>_BASE_URL)")
    parser.add_argument("--session-db", default=None,
                        help="SQLite file for the portal's sessions (default instance/clients/<name>.sqlite)")
    args = parser.parse_args(argv)

    module = import_module(f"clients.{args.portal}")
    config = module.CONFIG.from_environment()
    prefix = args.portal.upper()
    port = args.port or int(os.environ.get(f"{prefix}_PORT", 0) or
                            config.base_url.rsplit(":", 1)[1].split("/")[0])
    base_url = args.base_url or os.environ.get(f"{prefix}_BASE_URL") or f"http://{args.host}:{port}"
    config = replace(config, base_url=base_url.rstrip("/"),
                     session_db=args.session_db or os.environ.get(f"{prefix}_SESSION_DB", ""))
    app = module.create_app(config)
    print(f"{config.title} on {config.base_url} (issuer {config.issuer}, client {config.client_id})",
          flush=True)
    app.run(host=args.host, port=port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
