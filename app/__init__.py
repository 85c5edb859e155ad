"""Pointpass: loyalty programs on the phone wallets customers already have."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apiflask import APIFlask
from flask import has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.routing import IntegerConverter

from app import (
    background,
    dbutil,
    health,
    jsonbody,
    logs,
    metrics,
    openapi,
    problems,
    ratelimit,
    redisclient,
)
from app import config as config_module
from app.accounts import models as _account_models  # noqa: F401 - register the tables
from app.accounts.api import bp as accounts_api
from app.analytics import rollup as analytics_rollup
from app.analytics.api import bp as analytics_api
from app.api.admin import bp as admin_api
from app.api.audit import bp as audit_api
from app.api.loyalty import bp as loyalty_api
from app.api.members import bp as members_api
from app.audit import AuditEvent as _AuditEvent  # noqa: F401
from app.auth import models as _auth_models  # noqa: F401
from app.auth.api import bp as keys_api
from app.campaigns import service as campaign_service
from app.campaigns.api import bp as campaigns_api
from app.console import parts as console_parts
from app.enrollment.feedback_page import bp as feedback_pages
from app.enrollment.views import bp as enrollment_pages
from app.extensions import db, migrate
from app.feedback import models as _feedback_models  # noqa: F401
from app.feedback import service as _feedback_service  # noqa: F401 (its visit listener)
from app.loyalty import artwork_views, challenges, tick, visits
from app.loyalty import models as _loyalty_models  # noqa: F401
from app.loyalty.artwork_api import bp as artwork_api
from app.loyalty.challenges_api import bp as challenges_api
from app.loyalty.rules_api import bp as rules_api
from app.members import models as _member_models  # noqa: F401
from app.outbox import channels
from app.outbox import models as _outbox_models  # noqa: F401
from app.redemption import models as _redemption_models  # noqa: F401
from app.redemption.api import bp as redemption_api
from app.redemption.views import bp as staff_pages
from app.schemas import MAX_ID
from app.staff import models as _staff_models  # noqa: F401
from app.staff.api import bp as till_admin_api
from app.staff.views import bp as till_pages
from app.wallet import events as _wallet_events  # noqa: F401
from app.wallet import sweep
from app.wallet.api import bp as updates_api
from app.wallet.apple import fastpath as apple_fastpath
from app.wallet.apple import models as _apple_models  # noqa: F401
from app.wallet.apple import push as apple_push
from app.wallet.apple import setup as apple_setup
from app.wallet.apple.views import bp as apple_passes
from app.wallet.apple.webservice import bp as passkit
from app.wallet.google import models as _google_models  # noqa: F401
from app.wallet.google import setup as google_setup
from app.wallet.google import sync as google_sync
from app.wallet.google.views import bp as google_wallet
from app.wallet.google.views import callback as google_callback
from app.web import pagekit
from app.web.views import bp as web
from app.webhooks import drain as webhook_drain
from app.webhooks import models as _webhook_models  # noqa: F401
from app.webhooks.api import bp as webhooks_api

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def create_app(config: Mapping[str, Any] | None = None) -> APIFlask:
    """Build the service. ``config`` overrides defaults and ``POINTPASS_*`` variables."""
    # Read before the app exists, since Flask fixes the instance folder at construction.
    instance_path = (config or {}).get("INSTANCE_PATH") or os.environ.get(
        "POINTPASS_INSTANCE_PATH"
    )
    app = APIFlask(
        __name__,
        title="Pointpass API",
        version="1",
        spec_path="/api/openapi.json",
        docs_path="/api/docs",
        # app/templates links to the checkout's templates/; a wheel carries the files.
        template_folder="templates",
        instance_path=str(instance_path) if instance_path else _default_instance_path(),
    )
    app.url_map.converters["int"] = DatabaseId
    config_module.load(app, config)
    config_module.trust_proxies(app)
    app.config["SPEC_FORMAT"] = "json"
    app.config["INFO"] = {
        "description": "Issue wallet loyalty cards, keep the points store, push updates. "
        "Errors are RFC 9457 problem details. Any endpoint may answer 503 "
        "(`urn:pointpass:problem:database-unavailable`, with `Retry-After`) while the "
        "database cannot be reached; retry with the same `Idempotency-Key`. While the "
        "database schema is behind the code the answer is 503 "
        "`urn:pointpass:problem:schema-outdated` (an operator runs `pointpass db upgrade`). "
        "Every answer carries an `X-Request-Id` header (the request's own when it sent a "
        "usable one), also in problem bodies as `request_id` and on the service's log lines.",
    }
    # Inside every middleware added after it (request ids, metrics): the usual PassKit GETs
    # are answered before Flask (app/wallet/apple/fastpath.py).
    apple_fastpath.init_app(app)
    logs.init_app(app)  # POINTPASS_LOG_FORMAT, and a request id per request
    redisclient.init_app(app)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    health.init_app(app)
    metrics.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _sqlite_transactions(db.engine)
        else:
            dbutil.check_connections(db.engine)
    app.teardown_appcontext(dbutil.end_open_transactions)

    jsonbody.init_app(app)
    problems.init_app(app)
    openapi.init_app(app)
    background.init_app(app)
    ratelimit.init_app(app)
    apple_setup.init_app(app)
    google_setup.init_app(app)
    # The wallets the outbox tells about card changes (it names none itself).
    channels.register(app, apple_push.CHANNEL)
    channels.register(app, google_sync.CHANNEL)
    # Scheduled campaigns start from the periodic sweep, once due.
    sweep.add_task(app, campaign_service.start_due)
    # Visits complete challenges (badges and their bonus, in the visit's transaction).
    visits.on_visit(challenges.award_on_visit)
    # Closed days are rolled up for the analytics from the sweep, never on the earn path.
    sweep.add_task(app, analytics_rollup.sweep_task)
    # Webhook deliveries due (retries, a dead drain's leased ones) get a drain of their own.
    sweep.add_task(app, webhook_drain.sweep_task)
    # A Google class patch that failed when the design changed is sent again.
    sweep.add_task(app, google_sync.sync_classes)

    app.register_blueprint(loyalty_api)
    app.register_blueprint(members_api)
    app.register_blueprint(updates_api)
    app.register_blueprint(redemption_api)
    app.register_blueprint(keys_api)
    app.register_blueprint(admin_api)
    app.register_blueprint(till_admin_api)
    app.register_blueprint(accounts_api)
    app.register_blueprint(audit_api)
    app.register_blueprint(artwork_api)
    app.register_blueprint(rules_api)
    app.register_blueprint(campaigns_api)
    app.register_blueprint(challenges_api)
    app.register_blueprint(analytics_api)
    app.register_blueprint(webhooks_api)
    app.register_blueprint(apple_passes)
    app.register_blueprint(passkit)
    app.register_blueprint(google_wallet)

    # CSRF protection is on for every post; these callers prove who they are with API keys,
    # PassKit authentication tokens and Google's signatures, never with the session cookie.
    pagekit.exempt_from_csrf(members_api)
    pagekit.exempt_from_csrf(loyalty_api, updates_api, redemption_api, keys_api, admin_api,
                             till_admin_api, artwork_api, rules_api, campaigns_api, passkit,
                             accounts_api, audit_api, challenges_api, analytics_api,
                             webhooks_api, google_callback)
    pagekit.init_app(app)
    app.register_blueprint(enrollment_pages)
    app.register_blueprint(feedback_pages)
    app.register_blueprint(staff_pages)
    app.register_blueprint(till_pages)
    artwork_views.init_app(app)
    console_parts.init_app(app)

    if not app.config.get("REDIS_URL") and not app.testing:
        # Jobs run in this process, so the periodic sweep and tick do too (with rq, the
        # workers run it: `pointpass worker`).
        app.extensions["pointpass.sweeper"] = sweep.start_sweeper(app)
        app.extensions["pointpass.ticker"] = tick.start_scheduler(app)
    app.register_blueprint(web)
    return app


def _whole_numbers_up_to(limit: int) -> str:
    """A regular expression for the numbers 1 to ``limit``, without leading zeros."""
    digits = str(limit)
    width = len(digits)
    shorter = [rf"[1-9]\d{{0,{width - 2}}}"] if width > 1 else []
    below = []  # same width: a prefix of ``limit``, then a smaller digit, then any digits
    for i, digit in enumerate(digits):
        lowest = 1 if i == 0 else 0
        if int(digit) > lowest:
            rest = width - i - 1
            below.append(f"{digits[:i]}[{lowest}-{int(digit) - 1}]"
                         + (rf"\d{{{rest}}}" if rest else ""))
    return "(?:" + "|".join([*shorter, *below, digits]) + ")"


class DatabaseId(IntegerConverter):
    """``<int:...>`` in a URL: an id from 1 to ``MAX_ID``. Any other number names nothing
    (404): it matches no route, rather than failing in the database driver (and rather than
    a 405 that Werkzeug answers when a converter refuses a value a route of another method
    would take)."""

    regex = _whole_numbers_up_to(MAX_ID)


def _default_instance_path() -> str | None:
    """``instance/`` in a checkout; Flask's ``<prefix>/var/app-instance`` when installed."""
    return str(ROOT / "instance") if (ROOT / "pyproject.toml").is_file() else None


def _sqlite_transactions(engine: Engine) -> None:
    """Serialize SQLite writers with ``BEGIN IMMEDIATE`` and enable WAL and foreign keys.

    pysqlite's own transaction handling starts transactions lazily, so a transaction that
    reads before it writes can fail with "database is locked" instead of waiting. Taking the
    write lock at ``BEGIN`` makes every writing transaction wait its turn (up to the busy
    timeout); GET and HEAD requests, which must not write, read in WAL mode alongside them.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # GET and HEAD never write, so they read without queueing behind writers.
        reading = has_request_context() and request.method in ("GET", "HEAD")
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

