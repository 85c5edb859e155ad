"""Fetching a card's Apple pass: unchanged (served from the pass store) vs. a new version.

Both go through the Flask app's download route with the development certificates on SQLite.
"fresh build" earns a point before each fetch (outside the timing), as a purchase would: the
fetch loads the card, renders the strip for the new balance, builds the content, signs and
stores the pass. "rebuild" bumps the version without changing the balance, so the images come
from the renderer's cache. "cached" fetches an unchanged card from the pass store.

    python benchmarks/bench_pass_fetch.py [--count 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    logging.disable(logging.INFO)

    from flask_migrate import upgrade

    from app import create_app
    from app.enrollment import service as enrollment
    from app.extensions import db
    from app.loyalty import changes, earning, programs
    from app.loyalty.models import Card
    from app.wallet.apple import pass_files

    workdir = Path(tempfile.mkdtemp(prefix="pointpass-bench-"))
    app = create_app({"DATABASE_URL": f"sqlite:///{workdir / 'b.db'}", "ENV": "development",
                      "INSTANCE_PATH": workdir, "BASE_URL": "https://bench.test"})
    with app.app_context():
        upgrade()
        program = programs.create(name="Kopi Bench", rewards=[{"name": "Coffee",
                                                               "points_cost": 500}])
        card = enrollment.enroll(program, enrollment.Enrollment(name="Ayu"))
        earning.earn(card.serial_number, points=120, actor="bench")
        serial = card.serial_number
        url = pass_files.pass_url(card).removeprefix("https://bench.test")  # type: ignore[union-attr]

    client = app.test_client()

    def fetch() -> None:
        response = client.get(url)
        assert response.status_code == 200, response.status_code

    fetch()  # warm: brand images rendered, store written

    def timed_after(change) -> float:  # type: ignore[no-untyped-def]
        total = 0.0
        for _ in range(args.count):
            with app.app_context():
                change()
            start = time.perf_counter()
            fetch()
            total += time.perf_counter() - start
        return total

    def earn() -> None:
        earning.earn(serial, points=1, actor="bench")

    def touch() -> None:
        changes.touch_cards(Card.serial_number == serial)
        db.session.commit()

    fresh_total = timed_after(earn)
    rebuild_total = timed_after(touch)
    cached_start = time.perf_counter()
    for _ in range(args.count):
        fetch()
    cached_total = time.perf_counter() - cached_start
    signatures = app.extensions["pointpass.apple"].signatures

    # The same without the HTTP layer: the service call the route makes.
    def service_call() -> None:
        pass_files.signed_pass(serial, token)
        db.session.remove()

    with app.test_request_context(url):
        token = pass_files.download_token(serial)
        service_fresh = 0.0
        for _ in range(args.count):
            earn()
            db.session.remove()
            start = time.perf_counter()
            service_call()
            service_fresh += time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.count):
            service_call()
        service_cached = time.perf_counter() - start

    fresh_ms = fresh_total / args.count * 1000
    rebuild_ms = rebuild_total / args.count * 1000
    cached_ms = cached_total / args.count * 1000
    print(f"# pass fetch benchmark — {dt.date.today()} — {machine()}")
    print(f"fresh build (new balance)     {fresh_ms:7.3f} ms/fetch  ({1000 / fresh_ms:6.0f}/s)")
    print(f"rebuild (images cached)       {rebuild_ms:7.3f} ms/fetch  ({1000 / rebuild_ms:6.0f}/s)")
    print(f"cached (unchanged card)       {cached_ms:7.3f} ms/fetch  ({1000 / cached_ms:6.0f}/s)")
    print(f"HTTP: cached vs fresh build {fresh_ms / cached_ms:.1f}x, vs rebuild "
          f"{rebuild_ms / cached_ms:.1f}x; signatures: {signatures} for {2 * args.count + 1} "
          f"versions, none for {args.count} cached fetches")
    s_fresh = service_fresh / args.count * 1000
    s_cached = service_cached / args.count * 1000
    print(f"service call, fresh build     {s_fresh:7.3f} ms")
    print(f"service call, cached          {s_cached:7.3f} ms")
    print(f"service: cached vs fresh build {s_fresh / s_cached:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
