"""The Redis pass store keeps one signed pass per card, for a short while."""

from __future__ import annotations

import pytest
from redis import Redis

from app.wallet.apple.store import RedisPassStore
from tests.factories import REDIS_URL


@pytest.mark.redis
def test_a_new_version_replaces_the_old_one_and_expires() -> None:
    connection = Redis.from_url(REDIS_URL)
    store = RedisPassStore(connection, ttl=30)
    serial = "PPSTORETEST1"
    try:
        store.put(f"{serial}-1-4-abc", b"version one", f"{serial}-")
        assert store.get(f"{serial}-1-4-abc") == b"version one"
        store.put(f"{serial}-2-4-abc", b"version\ntwo", f"{serial}-")
        assert store.get(f"{serial}-2-4-abc") == b"version\ntwo"
        assert store.get(f"{serial}-1-4-abc") is None  # replaced, not kept beside it
        assert store.get(f"{serial}-2-4-other-signer") is None
        keys = list(connection.scan_iter(match=f"pointpass:pkpass:{serial}*"))
        assert keys == [f"pointpass:pkpass:{serial}-".encode()]
        assert 0 < connection.ttl(keys[0]) <= 30
        # get_or_build signs only when the store lacks the version asked for.
        built: list[int] = []
        assert store.get_or_build(f"{serial}-2-4-abc", f"{serial}-",
                                  lambda: built.append(2) or b"x") == b"version\ntwo"
        assert store.get_or_build(f"{serial}-3-4-abc", f"{serial}-",
                                  lambda: built.append(3) or b"three") == b"three"
        assert built == [3]
    finally:
        store.forget(f"{serial}-")
    assert store.get(f"{serial}-3-4-abc") is None
