"""The data of the stats benchmark (``bench_stats.py``): a program's members, cards and ledger
over ~400 days, generated in PostgreSQL with set-based SQL.

Every figure is a function of the member's number ``g`` and the entry's place ``k`` through
PostgreSQL's ``hashint8`` (``H(x, salt)`` below), so a run with the same ``--members`` and
instant makes the same data. Per card:

- joined ``H % 730`` days before the data's instant; entries between the later of joining and
  400 days ago and the card's last active day (three in five members are active to the end,
  the others stopped up to 300 days ago);
- 1 to 7 *blocks* of five entries (20 entries per card on average), at increasing times:
  place 0 a purchase (``earn`` with an amount of 20,000-499,500 IDR, 1 point per 1,000 IDR),
  place 1 a rule's ``bonus`` on that purchase (half the time; else another purchase), place
  2 a purchase (or, one in 33, a goodwill ``adjust``), place 3 a purchase, and place 4 the
  block's debit: a redemption of the dearest reward the block's credits pay for (45%), a full
  ``refund`` of the block's first purchase (8%), a negative ``adjust`` (2%) or another
  purchase. One redemption in 50 is reversed (a ``reverse`` entry and a lot) minutes later;
- every credit is a lot expiring 365 days after it (the program's setting); a debit takes
  from its block's lots, in spend order, and records what it took (``lot_consumptions``);
  lots older than 365 days with points left expire (an ``expire`` entry at their expiry).
  So ``cards.balance`` = the sum of the entries' points = the lots' remaining points, and
  ``last_visit_at`` is the latest purchase or redemption (``pointpass check-ledger`` holds);
- visits are at the member's home store (one of ten) three times in four; one visit in 20
  invites feedback, three in ten invitations are answered (a score whose mix depends on
  the store);
- four cards in ten on an iPhone (one in five of them removed later), three in ten saved
  to Google (a quarter deleted later), with their ``wallet_events``.

Entry ids are ``(g - 1) * STRIDE + key + 1`` (so generating needs no lookups), and the
ledger is written in the order of ``created_at``, as a live ledger is laid out on disk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

STRIDE = 84  # entry keys per card: 35 regular, 7 reversals, one expiry per lot (< 42)
REWARDS = [("Iced coffee", 500), ("Pastry box", 1000), ("Lunch set", 2500),
           ("Dinner for two", 5000)]
RULES = [("multiplier", "Double Tuesday", None, 200), ("bonus", "Weekend bonus", 50, None),
         ("bonus", "Big spender", 200, None)]
TABLES = ["members", "cards", "ledger_entries", "point_lots", "lot_consumptions",
          "redemptions", "feedback_invitations", "wallet_events", "apple_devices",
          "apple_registrations", "google_objects"]


def H(x: str, salt: int) -> str:
    """A pseudo-random non-negative int4 of the bigint expression ``x``, per ``salt``."""
    return f"(hashint8(({x})::bigint * 64 + {salt}) & 2147483647)"


KEY = "(st.g::bigint * 256 + st.k)"

# One chunk of cards [g0, g1]: one row per block (its five entries' amounts and credits,
# the debit and what it takes from each credit's lot), then the block's entries.
STAGE = f"""
CREATE TEMP TABLE st AS
WITH c AS (
  SELECT g, j.joined,
         least(greatest(j.joined, %(start)s::timestamptz),
               %(as_of)s::timestamptz - interval '1 hour') AS s,
         CASE WHEN {H('g', 2)} %% 5 < 3 THEN %(as_of)s::timestamptz
              ELSE %(as_of)s::timestamptz - ({H('g', 3)} %% 300) * interval '1 day' END AS e,
         1 + {H('g', 4)} %% 7 AS nb
  FROM generate_series(%(g0)s::int, %(g1)s::int) g,
  LATERAL (SELECT %(as_of)s::timestamptz - ({H('g', 1)} %% 730) * interval '1 day'
                  - ({H('g', 5)} %% 86400) * interval '1 second' AS joined) j
), blk AS (
  SELECT c.g, c.joined, c.s, greatest(c.e, c.s + interval '1 hour') - c.s AS span, c.nb, b,
         c.g::bigint * 256 + b * 5 AS k0
  FROM c, generate_series(0, c.nb - 1) b
), v AS (
  SELECT blk.*,
         (40 + {H('k0', 7)} %% 960) * 50000::bigint AS a0,
         (40 + {H('k0 + 1', 7)} %% 960) * 50000::bigint AS a1,
         (40 + {H('k0 + 2', 7)} %% 960) * 50000::bigint AS a2,
         (40 + {H('k0 + 3', 7)} %% 960) * 50000::bigint AS a3,
         (40 + {H('k0 + 4', 7)} %% 960) * 50000::bigint AS a4,
         {H('k0 + 1', 9)} %% 2 = 0 AS bonus, {H('k0 + 1', 8)} %% 3 AS rule,
         {H('k0 + 2', 8)} %% 33 = 0 AS goodwill, {H('k0 + 2', 11)} %% 9 AS goodwill_size,
         {H('k0 + 4', 10)} %% 100 AS debit_roll, {H('k0 + 4', 12)} %% 400 AS adjust_size
  FROM blk
), cr AS MATERIALIZED (
  SELECT v.*, a0 / 100000 AS c0,
         CASE WHEN NOT bonus THEN a1 / 100000 WHEN rule = 0 THEN a0 / 100000
              WHEN rule = 1 THEN 50 ELSE 200 END AS c1,
         CASE WHEN goodwill THEN 100 * (1 + goodwill_size) ELSE a2 / 100000 END AS c2,
         a3 / 100000 AS c3
  FROM v
), d AS MATERIALIZED (
  SELECT cr.*, kind4,
         CASE kind4
           WHEN 'redeem' THEN CASE WHEN c0 + c1 + c2 + c3 >= 5000 THEN 5000
                                   WHEN c0 + c1 + c2 + c3 >= 2500 THEN 2500
                                   WHEN c0 + c1 + c2 + c3 >= 1000 THEN 1000 ELSE 500 END
           WHEN 'refund' THEN c0 + CASE WHEN bonus THEN c1 ELSE 0 END
           WHEN 'adjust' THEN least(c0 + c1 + c2 + c3, 100 + adjust_size)
           ELSE 0 END AS debit
  FROM cr, LATERAL (SELECT
         CASE WHEN debit_roll < 45 AND c0 + c1 + c2 + c3 >= 500 THEN 'redeem'
              WHEN debit_roll BETWEEN 45 AND 52 THEN 'refund'
              WHEN debit_roll BETWEEN 53 AND 54 THEN 'adjust'
              ELSE 'earn' END AS kind4) k4
)
SELECT d.g, d.b * 5 + e.p AS k, d.b, e.p, d.joined,
       -- a time in the k-th of 5 * nb equal slots of the card's active span
       d.s + d.span * ((d.b * 5 + e.p + 0.1::float8
                        + ({H('d.k0 + e.p', 6)} %% 1000) * 0.0008::float8) / (5 * d.nb)) AS t,
       e.kind, e.points, e.amount,
       CASE WHEN e.p = 1 AND d.bonus THEN 1 + d.rule END AS rule_no,
       CASE WHEN e.p = 1 AND d.bonus OR e.p = 4 AND d.kind4 = 'refund' THEN d.b * 5 END
         AS purchase_key,
       CASE WHEN e.p = 4 AND d.kind4 = 'redeem' THEN d.debit END AS reward_cost,
       -- what the block's debit takes from this credit's lot (spend order: oldest first;
       -- a refund takes its purchase's own lots)
       CASE WHEN e.p = 4 OR d.kind4 = 'earn' THEN 0
            WHEN d.kind4 = 'refund' THEN CASE WHEN e.p = 0 OR e.p = 1 AND d.bonus
                                              THEN e.points ELSE 0 END
            ELSE least(e.points, greatest(0, d.debit - e.before)) END AS taken,
       d.b * 5 + 4 AS debit_key,
       CASE WHEN h.h13 %% 4 < 3 THEN d.g %% 10 ELSE h.h13 %% 10 END AS store
FROM d, LATERAL (VALUES
  (0, 'earn', d.c0, d.a0, 0),
  (1, CASE WHEN d.bonus THEN 'bonus' ELSE 'earn' END, d.c1,
   CASE WHEN d.bonus THEN NULL ELSE d.a1 END, d.c0),
  (2, CASE WHEN d.goodwill THEN 'adjust' ELSE 'earn' END, d.c2,
   CASE WHEN d.goodwill THEN NULL ELSE d.a2 END, d.c0 + d.c1),
  (3, 'earn', d.c3, d.a3, d.c0 + d.c1 + d.c2),
  (4, d.kind4, CASE WHEN d.kind4 = 'earn' THEN d.a4 / 100000 ELSE -d.debit END,
   CASE WHEN d.kind4 = 'earn' THEN d.a4 WHEN d.kind4 = 'refund' THEN d.a0 END, 0)
) e(p, kind, points, amount, before),
LATERAL (SELECT {H('d.k0 + e.p', 13)} AS h13) h
"""

# A redemption in 50 is reversed five minutes later: key 35 + block, a credit (a new lot).
REVERSALS = f"""
INSERT INTO st (g, k, b, p, joined, t, kind, points, taken, debit_key, store, purchase_key)
SELECT st.g, 35 + st.b, st.b, 5, st.joined, st.t + interval '5 minutes', 'reverse',
       -st.points, 0, NULL, st.store, st.k
FROM st WHERE st.kind = 'redeem' AND {H(KEY, 14)} %% 50 = 0
  AND st.t + interval '5 minutes' < %(as_of)s
"""

# Lots past their expiry with points left: an expire entry (key 42 + the lot's key) at it.
EXPIRIES = """
INSERT INTO st (g, k, b, p, joined, t, kind, points, taken, debit_key, store, purchase_key)
SELECT g, 42 + k, b, 6, joined, t + interval '365 days', 'expire', -(points - taken), 0,
       NULL, store, k
FROM st WHERE points > 0 AND kind <> 'refund' AND points - taken > 0
  AND t + interval '365 days' <= %(as_of)s
"""


def entry_id(g: str, key: str) -> str:
    return f"(({g}) - 1) * {STRIDE} + ({key}) + 1"


# The staged entries' final columns, balances after each in time order.
ENTRIES = f"""
INSERT INTO gen_entries (id, card_id, kind, points, balance_after, actor, reference, reason,
                         amount, currency, reverses_id, created_at, location_id,
                         pending_points, rule_id, purchase_id, shortfall)
SELECT {entry_id('g', 'k')}, g, kind, points,
       sum(points) OVER (PARTITION BY g ORDER BY t, k ROWS UNBOUNDED PRECEDING),
       CASE WHEN kind IN ('expire') THEN 'job:tick' WHEN kind = 'adjust' THEN 'console'
            ELSE 'api_key:1' END,
       CASE WHEN kind IN ('earn', 'refund') THEN 'R' || g || '-' || coalesce(purchase_key, k)
       END,
       CASE WHEN kind = 'adjust' THEN 'Goodwill' END,
       amount, CASE WHEN amount IS NOT NULL THEN 'IDR' END,
       CASE WHEN kind = 'reverse' THEN {entry_id('g', 'purchase_key')} END,
       t, CASE WHEN kind IN ('earn', 'redeem', 'refund') THEN %(first_store)s + store END,
       0, CASE WHEN rule_no IS NOT NULL THEN %(first_rule)s + rule_no - 1 END,
       CASE WHEN kind IN ('bonus', 'refund') THEN {entry_id('g', 'purchase_key')} END,
       CASE WHEN kind = 'refund' THEN 0 END
FROM st
"""

LOTS = f"""
INSERT INTO point_lots (id, card_id, entry_id, points, remaining, pending, available_at,
                        expires_at, reminded_at, created_at)
SELECT {entry_id('g', 'k')}, g, {entry_id('g', 'k')}, points,
       CASE WHEN t + interval '365 days' <= %(as_of)s THEN 0 ELSE points - taken END,
       false, t, t + interval '365 days',
       -- reminded (by the tick) 14 days before expiring, as a live program's lots are
       CASE WHEN t + interval '351 days' <= %(as_of)s THEN t + interval '351 days' END, t
FROM st WHERE points > 0
"""

CONSUMPTIONS = f"""
INSERT INTO lot_consumptions (entry_id, lot_id, points)
SELECT {entry_id('g', 'debit_key')}, {entry_id('g', 'k')}, taken FROM st WHERE taken > 0
UNION ALL
SELECT {entry_id('g', 'k')}, {entry_id('g', 'purchase_key')}, -points FROM st
WHERE kind = 'expire'
"""

REDEMPTIONS = f"""
INSERT INTO redemptions (card_id, ledger_entry_id, reward_id, points, code_version,
                         location_id, created_at, reversed_at, reversal_entry_id)
SELECT st.g, {entry_id('st.g', 'st.k')},
       %(first_reward)s + CASE st.reward_cost WHEN 500 THEN 0 WHEN 1000 THEN 1
                                               WHEN 2500 THEN 2 ELSE 3 END,
       st.reward_cost, 1 + st.k, %(first_store)s + st.store, st.t, rv.t,
       CASE WHEN rv.k IS NOT NULL THEN {entry_id('rv.g', 'rv.k')} END
FROM st LEFT JOIN st rv ON rv.g = st.g AND rv.kind = 'reverse' AND rv.purchase_key = st.k
WHERE st.kind = 'redeem'
"""

# One visit in 20 invites feedback (expiring after 7 days); three in ten are answered, the
# promoters' share rising with the store's number.
FEEDBACK = f"""
INSERT INTO feedback_invitations (program_id, card_id, token, entry_id, location_id,
                                  created_at, expires_at, answered_at, score, comment,
                                  language)
SELECT %(program)s, st.g, md5('fb' || {entry_id('st.g', 'st.k')}), {entry_id('st.g', 'st.k')},
       %(first_store)s + st.store, st.t + interval '2 minutes', st.t + interval '7 days',
       CASE WHEN answered THEN st.t + interval '1 hour' END,
       CASE WHEN answered THEN
         CASE WHEN {H(KEY, 16)} %% 100 < 30 + 5 * st.store THEN 9 + {H(KEY, 17)} %% 2
              WHEN {H(KEY, 16)} %% 100 < 60 + 3 * st.store THEN 7 + {H(KEY, 17)} %% 2
              ELSE {H(KEY, 17)} %% 7 END END,
       CASE WHEN answered AND {H(KEY, 18)} %% 4 = 0 THEN 'Comment ' || st.k END,
       (ARRAY['en', 'id', 'th', 'ms'])[st.g %% 4 + 1]
FROM st, LATERAL (SELECT {H(KEY, 15)} %% 10 < 3 AND st.t + interval '1 hour' < %(as_of)s
                  AS answered) a
WHERE st.kind IN ('earn', 'redeem') AND {H(KEY, 19)} %% 20 = 0
"""

MEMBERS = f"""
INSERT INTO members (id, program_id, name, language, birthday, consent_marketing,
                     consent_terms, referral_code, created_at)
SELECT g, %(program)s, 'Member ' || g, (ARRAY['en', 'id', 'th', 'ms'])[g %% 4 + 1],
       CASE WHEN g %% 5 = 0 THEN NULL ELSE date '1970-01-01' + (g * 37 %% 18000) END,
       g %% 3 = 0, true, 'B' || g,
       %(as_of)s::timestamptz - ({H('g', 1)} %% 730) * interval '1 day'
         - ({H('g', 5)} %% 86400) * interval '1 second'
FROM generate_series(%(g0)s::int, %(g1)s::int) g
"""

CARDS = """
INSERT INTO cards (id, program_id, member_id, serial_number, authentication_token,
                   barcode_secret, barcode_version, status, balance, lifetime_points, tier_id,
                   version, updated_at, created_at, last_modified, change_stamp,
                   totp_last_counter, last_visit_at, member_language, member_birthday_month,
                   member_joined_at)
SELECT m.id, %(program)s, m.id, 'STA' || lpad(m.id::text, 10, '0'), md5(m.id::text),
       md5('secret' || m.id), 1, CASE WHEN m.id %% 200 = 0 THEN 'voided' ELSE 'active' END,
       coalesce(a.balance, 0), coalesce(a.lifetime, 0),
       CASE WHEN coalesce(a.lifetime, 0) >= 20000 THEN %(gold)s
            WHEN coalesce(a.lifetime, 0) >= 5000 THEN %(silver)s ELSE %(bronze)s END,
       1, %(as_of)s, m.created_at, extract(epoch FROM %(as_of)s::timestamptz)::bigint, 0, 0,
       a.last_visit, m.language, extract(month FROM m.birthday), m.created_at
FROM members m LEFT JOIN (
  SELECT g, sum(points) AS balance,
         greatest(0, sum(points) FILTER (WHERE kind IN ('earn', 'bonus', 'refund')))
           AS lifetime,
         max(t) FILTER (WHERE kind IN ('earn', 'redeem')) AS last_visit
  FROM st GROUP BY g) a ON a.g = m.id
WHERE m.id BETWEEN %(g0)s AND %(g1)s
"""

# Wallets: an iPhone for four cards in ten (one in five removed later), Google for three in
# ten (a quarter deleted later); each install and removal is a wallet event.
WALLETS = [
    f"""INSERT INTO apple_devices (id, library_identifier, push_token, registered_at, created_at)
        SELECT g, 'device-' || g, md5(g::text) || md5(g::text), m.created_at, m.created_at
        FROM generate_series(%(g0)s::int, %(g1)s::int) g JOIN members m ON m.id = g
        WHERE {H('g', 30)} %% 10 < 4""",
    f"""INSERT INTO apple_registrations (device_id, card_id, created_at, removed_at)
        SELECT g, g, installed,
               CASE WHEN {H('g', 31)} %% 5 = 0 AND removed < %(as_of)s THEN removed END
        FROM generate_series(%(g0)s::int, %(g1)s::int) g JOIN members m ON m.id = g,
        LATERAL (SELECT least(m.created_at + ({H('g', 32)} %% 72) * interval '1 hour',
                              %(as_of)s::timestamptz - interval '1 minute') AS installed) i,
        LATERAL (SELECT i.installed + (1 + {H('g', 33)} %% 200) * interval '1 day' AS removed) x
        WHERE {H('g', 30)} %% 10 < 4""",
    """INSERT INTO wallet_events (program_id, card_id, platform, kind, device_id, at)
       SELECT %(program)s, r.card_id, 'apple', e.kind, r.device_id, e.at
       FROM apple_registrations r,
       LATERAL (VALUES ('installed', r.created_at), ('removed', r.removed_at)) e(kind, at)
       WHERE r.card_id BETWEEN %(g0)s AND %(g1)s AND e.at IS NOT NULL""",
    f"""INSERT INTO google_objects (card_id, synced_version, synced_balance, synced_at, saved,
                                    saved_changed_at)
        SELECT c.id, 1, c.balance, %(as_of)s, NOT deleted,
               CASE WHEN deleted THEN removed ELSE installed END
        FROM cards c,
        LATERAL (SELECT least(c.created_at + ({H('c.id', 34)} %% 120) * interval '1 hour',
                              %(as_of)s::timestamptz - interval '1 minute') AS installed) i,
        LATERAL (SELECT i.installed + (1 + {H('c.id', 35)} %% 300) * interval '1 day'
                        AS removed) x,
        LATERAL (SELECT {H('c.id', 36)} %% 4 = 0 AND x.removed < %(as_of)s AS deleted) d
        WHERE c.id BETWEEN %(g0)s AND %(g1)s AND {H('c.id', 37)} %% 10 < 3""",
    """INSERT INTO wallet_events (program_id, card_id, platform, kind, device_id, at)
       SELECT %(program)s, o.card_id, 'google', e.kind, NULL, e.at
       FROM google_objects o JOIN cards c ON c.id = o.card_id,
       LATERAL (VALUES ('installed', CASE WHEN o.saved THEN o.saved_changed_at
                                          ELSE least(c.created_at + interval '1 hour',
                                                     o.saved_changed_at) END),
                       ('removed', CASE WHEN NOT o.saved THEN o.saved_changed_at END))
         e(kind, at)
       WHERE o.card_id BETWEEN %(g0)s AND %(g1)s AND e.at IS NOT NULL""",
]


def _saved_indexes(conn: psycopg.Connection, tables: list[str]) -> list[str]:
    """The statements that make again the indexes and the primary and unique constraints of
    ``tables`` (dropped while loading: building them afterwards is several times faster)."""
    rows = conn.execute(
        """SELECT 'ALTER TABLE ' || quote_ident(t.relname) || ' ADD CONSTRAINT '
                  || quote_ident(con.conname) || ' ' || pg_get_constraintdef(con.oid),
                  'ALTER TABLE ' || quote_ident(t.relname) || ' DROP CONSTRAINT '
                  || quote_ident(con.conname) || ' CASCADE'
           FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid
           WHERE con.contype IN ('p', 'u') AND t.relname = ANY(%s)
           UNION ALL
           SELECT i.indexdef, 'DROP INDEX ' || quote_ident(i.indexname)
           FROM pg_indexes i WHERE i.tablename = ANY(%s) AND i.schemaname = 'public'
             AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conname = i.indexname)
        """, (tables, tables)).fetchall()
    # Foreign keys that lean on a dropped primary or unique constraint go with it (CASCADE):
    # save them too.
    fks = conn.execute(
        """SELECT 'ALTER TABLE ' || quote_ident(t.relname) || ' ADD CONSTRAINT '
                  || quote_ident(con.conname) || ' ' || pg_get_constraintdef(con.oid)
           FROM pg_constraint con JOIN pg_class t ON t.oid = con.conrelid
           JOIN pg_class f ON f.oid = con.confrelid
           WHERE con.contype = 'f' AND f.relname = ANY(%s)""", (tables,)).fetchall()
    for _create, drop in rows:
        conn.execute(drop)
    creates = [create for create, _drop in rows]
    # Primary and unique keys first: the foreign keys need them.
    creates.sort(key=lambda s: not s.startswith("ALTER TABLE"))
    return creates + [fk for (fk,) in fks]


def generate(url: str, program: dict[str, Any], members: int, as_of: datetime,
             chunk: int = 50_000, say: Callable[[str], None] = print) -> dict[str, float]:
    """Write the data for ``members`` members of ``program`` (its ``id``, ``first_store``,
    ``first_reward``, ``first_rule``, ``bronze``, ``silver``, ``gold``) into the migrated,
    empty database at ``url``. Returns the seconds spent per phase."""
    phases: dict[str, float] = {}
    spent: dict[str, float] = {}
    started = time.monotonic()
    params = {**program, "program": program["id"], "as_of": as_of,
              "start": as_of.replace(microsecond=0) - _days(400)}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET work_mem = '256MB'")
        conn.execute("SET jit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        # Foreign keys are not checked while loading (the data is made to satisfy them), as
        # pg_restore --disable-triggers does.
        conn.execute("SET session_replication_role = replica")
        recreate = _saved_indexes(conn, TABLES)
        # The ledger is staged in monthly unlogged tables, then written in time order.
        conn.execute("CREATE UNLOGGED TABLE gen_entries (LIKE ledger_entries) "
                     "PARTITION BY RANGE (created_at)")
        months = []
        month_start = params["start"] - _days(1)
        while month_start <= as_of:
            months.append(month_start)
            month_start += _days(30)
        for i, begin in enumerate(months):
            conn.execute(f"CREATE UNLOGGED TABLE gen_entries_{i} PARTITION OF gen_entries "
                         f"FOR VALUES FROM ('{begin.isoformat()}') "
                         f"TO ('{(begin + _days(30)).isoformat()}')")
        for g0 in range(1, members + 1, chunk):
            g1 = min(members, g0 + chunk - 1)
            p = {**params, "g0": g0, "g1": g1}
            with conn.transaction():
                for statement in (STAGE, REVERSALS, EXPIRIES, "ANALYZE st", MEMBERS, CARDS,
                                  ENTRIES, LOTS, CONSUMPTIONS, REDEMPTIONS, FEEDBACK, *WALLETS,
                                  "DROP TABLE st"):
                    mark = time.monotonic()
                    conn.execute(statement, p)
                    spent[statement[:40]] = spent.get(statement[:40], 0.0) + (
                        time.monotonic() - mark)
            say(f"  members {g0:,}-{g1:,} staged ({time.monotonic() - started:.0f} s)")
        phases["stage"] = time.monotonic() - started
        if os.environ.get("BENCH_PROFILE"):
            for statement, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
                say(f"    {seconds:6.1f} s  {' '.join(statement.split())}")
        mark = time.monotonic()
        for i in range(len(months)):
            conn.execute(f"INSERT INTO ledger_entries SELECT * FROM gen_entries_{i} "
                         "ORDER BY created_at")
        conn.execute("DROP TABLE gen_entries")
        phases["ledger in time order"] = time.monotonic() - mark
        say(f"  ledger written in time order ({time.monotonic() - started:.0f} s)")
        mark = time.monotonic()
        built: dict[str, float] = {}
        for statement in recreate:
            begun = time.monotonic()
            conn.execute(statement)
            built[statement] = time.monotonic() - begun
        phases["indexes"] = time.monotonic() - mark
        if os.environ.get("BENCH_PROFILE"):
            for statement, seconds in sorted(built.items(), key=lambda kv: -kv[1])[:12]:
                say(f"    {seconds:6.1f} s  {statement[:100]}")
        say(f"  indexes built ({time.monotonic() - started:.0f} s)")
        for table in ("members", "cards", "ledger_entries", "point_lots", "redemptions",
                      "wallet_events", "apple_devices", "apple_registrations",
                      "feedback_invitations"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")
        mark = time.monotonic()
        conn.execute("SET session_replication_role = DEFAULT")
        conn.execute("VACUUM (ANALYZE, FREEZE)")
        phases["vacuum analyze"] = time.monotonic() - mark
    phases["total"] = time.monotonic() - started
    return phases


def _days(n: int) -> Any:
    from datetime import timedelta

    return timedelta(days=n)
