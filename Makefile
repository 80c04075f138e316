# Kameng: `make run` serves the demo shop, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint setup migrate seed messages bench clean test-sqlite

$(VENV)/.installed: requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	touch $@

.env:
	$(PY) -m kameng.demo_env .env

setup: $(VENV)/.installed .env

migrate: setup
	$(PY) manage.py migrate --noinput

seed: migrate
	$(PY) manage.py seed_demo

# Web (runserver), Celery worker and beat on the embedded default (SQLite + filesystem broker).
# SITE_URL (links in emails and SMS, gateway callbacks) follows HOST and PORT unless it is set.
# Ctrl-C stops all three: the terminal sends SIGINT to the whole process group; the trap sends
# each child one SIGTERM by its pid and waits for them. (The trap must not signal the group with
# "kill 0": that signals this shell too, re-entering the trap until the shell crashes while the
# worker gets thousands of shutdown requests.) Background jobs of a non-interactive shell ignore
# SIGINT, so the SIGTERM is what stops them; the shell ignores further signals while it waits.
run: seed
	@. ./.env; echo ""; \
	echo "  Kameng is starting at http://$(HOST):$(PORT)/"; \
	echo "  Admin: http://$(HOST):$(PORT)/admin/  user: admin  password: $$DEMO_ADMIN_PASSWORD"; \
	echo ""
	@export SITE_URL="$${SITE_URL:-http://$(HOST):$(PORT)}" PYTHONUNBUFFERED=1; \
	$(VENV)/bin/celery -A kameng worker --loglevel=INFO --concurrency=2 --without-mingle --without-gossip & worker=$$!; \
	$(VENV)/bin/celery -A kameng beat --loglevel=INFO & beat=$$!; \
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload & web=$$!; \
	trap 'trap "" INT TERM; kill -TERM $$web $$beat $$worker 2>/dev/null; wait; exit 130' INT TERM; \
	wait $$web; status=$$?; trap "" INT TERM; kill -TERM $$beat $$worker 2>/dev/null; wait; exit $$status

test: setup
	$(PY) -m kameng.services_env > .test-services.env
	@cat .test-services.env
	set -a; . ./.test-services.env; set +a; $(PY) -m pytest $(PYTEST_ARGS)

# Code health, configured in pyproject.toml: ruff's rules, ruff's formatting (checked, never
# rewritten here: run `.venv/bin/ruff format .` yourself), and mypy over the apps. The django-stubs
# plugin imports kameng.settings, hence setup (.env).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The suite on SQLite, the embedded default `make run` uses: every test but those that need
# PostgreSQL, Redis or a browser (they run in `make test`), so each builder's batch is run on
# both databases.
test-sqlite: setup
	@rm -rf var/test-broker-sqlite
	DATABASE_URL=sqlite:///var/test-sqlite.sqlite3 KAMENG_REQUIRE_SERVICES=0 KAMENG_TEST_REDIS_URL= \
	KAMENG_BROKER_DIR=var/test-broker-sqlite $(PY) -m pytest -m "not postgres and not redis and not browser" $(PYTEST_ARGS)

bench: setup
	$(PY) bench/reserve.py

messages: setup
	$(PY) manage.py makemessages -l zh_Hans -l zh_Hant --ignore=.venv --ignore=tests --ignore=bench
	# Chinese has one plural form; msgmerge keeps adding a second, empty one.
	sed -i -e '/^msgstr\[1\] ""$$/d' -e '/^#| /d' locale/zh_Hans/LC_MESSAGES/django.po locale/zh_Hant/LC_MESSAGES/django.po
	$(PY) manage.py compilemessages --ignore=.venv

clean:
	rm -rf $(VENV) var db.sqlite3* staticfiles .test-services.env .mypy_cache .ruff_cache
