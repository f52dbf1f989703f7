# SatuID: `make demo` runs the identity provider and two example portals; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app wsgi
IDP_PORT ?= 5000
HEALTH_PORT ?= 5001
SOCIAL_PORT ?= 5002
export IDP_ISSUER ?= http://127.0.0.1:$(IDP_PORT)

.PHONY: install browser demo test lint typecheck lock bench clean

# Exact versions with hashes from requirements.lock; pyproject.toml keeps the ranges.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Re-resolve the lock file within pyproject.toml's ranges (after changing a dependency).
lock:
	test -x $(VENV)/bin/uv || { test -x $(PY) || $(PYTHON) -m venv $(VENV); $(PY) -m pip install -q uv==0.13.9; }
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
	  --upgrade -o requirements.lock

install: $(VENV)/.installed
	$(PY) -m idp.i18n compile

# The stock npm relying-party libraries of the interoperability tests, pinned by package-lock.json.
INTEROP := tests/interop
$(INTEROP)/node_modules/.installed: $(INTEROP)/package.json $(INTEROP)/package-lock.json
	cd $(INTEROP) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's chromium for the browser tests (Playwright's own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; fi; }

# Portals' addresses, registered by seed-demo (redirect, post-logout and back-channel logout URIs).
DEMO_URLS := SATUID_DEMO_HEALTH_URL=http://127.0.0.1:$(HEALTH_PORT) SATUID_DEMO_SOCIAL_URL=http://127.0.0.1:$(SOCIAL_PORT)

demo: install
	$(FLASK) db upgrade
	$(DEMO_URLS) $(FLASK) seed-demo
	@echo "SatuID on $(IDP_ISSUER); portals on http://127.0.0.1:$(HEALTH_PORT) and http://127.0.0.1:$(SOCIAL_PORT)"
	@echo "What to click: docs/demo.md. Stop with Ctrl-C."
	@trap 'kill 0' INT TERM EXIT; \
	$(VENV)/bin/gunicorn --workers 2 --bind 127.0.0.1:$(IDP_PORT) --access-logfile - wsgi:app & \
	$(FLASK) audit checkpoint --forever --interval 2 >/dev/null & \
	SATUID_ISSUER=$(IDP_ISSUER) $(PY) -m clients.run health --port $(HEALTH_PORT) & \
	SATUID_ISSUER=$(IDP_ISSUER) $(PY) -m clients.run social --port $(SOCIAL_PORT) & \
	wait

test: install browser $(INTEROP)/node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

bench: install
	$(PY) bench/national.py
	$(PY) bench/login.py
	$(PY) bench/oidc_flow.py
	$(PY) bench/fuzz.py
	$(PY) bench/checkpoint.py

clean:
	rm -rf $(VENV) instance test-artifacts
