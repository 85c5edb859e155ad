"""Signed passes, kept per card version so an unchanged card is never signed twice.

The store is shared by every process of the service: Redis when ``POINTPASS_REDIS_URL`` is
set (one pass per card, for `POINTPASS_PASS_CACHE_SECONDS`), otherwise files in the instance
folder. :meth:`PassStore.get_or_build` holds a lock per
key while it builds, so concurrent fetches of a new version, from any process, sign once.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from flask import Flask

from app.redisclient import redis_for

TTL_SECONDS = 60  # POINTPASS_PASS_CACHE_SECONDS: how long Redis keeps a signed pass


class PassStore:
    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def put(self, key: str, data: bytes, replaces_prefix: str) -> None:
        raise NotImplementedError

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """:meth:`get` of each key, in order."""
        return [self.get(key) for key in keys]

    def put_many(self, passes: list[tuple[str, bytes, str]]) -> None:
        """:meth:`put` of each ``(key, data, replaces_prefix)``."""
        for key, data, prefix in passes:
            self.put(key, data, prefix)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        raise NotImplementedError
        yield

    def forget(self, prefix: str) -> None:
        """Delete every stored pass whose key starts with ``prefix`` (a card's versions)."""
        raise NotImplementedError

    def get_or_build(self, key: str, prefix: str, build: Callable[[], bytes]) -> bytes:
        """The bytes stored under ``key``, building and storing them first if absent.

        ``prefix`` names the card's other versions, which the new one replaces.
        """
        data = self.get(key)
        if data is not None:
            return data
        with self.lock(prefix):
            data = self.get(key)  # another process may have built it while we waited
            if data is None:
                data = build()
                self.put(key, data, prefix)
        return data

    @staticmethod
    def for_app(app: Flask) -> PassStore:
        connection = redis_for(app)
        if connection is not None:
            return RedisPassStore(connection,
                                  int(app.config.get("PASS_CACHE_SECONDS", TTL_SECONDS)))
        return FilePassStore(Path(app.instance_path) / "pass-cache")


class FilePassStore(PassStore):
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "locks").mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pkpass"

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes, replaces_prefix: str) -> None:
        self.forget(replaces_prefix)
        tmp = self._path(key).with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(self._path(key))  # readers see the whole file or none of it

    def forget(self, prefix: str) -> None:
        for old in self.directory.glob(f"{prefix}*.pkpass"):
            old.unlink(missing_ok=True)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        # One lock file per card, never deleted: deleting it would let a process waiting on the
        # old file and one opening a new file hold "the" lock at once. Each open() gets its own
        # flock, so this serializes threads of one process as well as processes.
        with open(self.directory / "locks" / name, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class RedisPassStore(PassStore):
    """One Redis key per card (``pointpass:pkpass:<serial>-``) holding its latest signed
    version, for ``ttl`` seconds: a new version replaces the old one, so a design change of
    a million cards keeps at most the passes fetched within the TTL, not a million of them.
    (A device fetches its new pass within seconds of the push, and asks again with
    ``If-Modified-Since``, which the version answers without the store.)"""

    def __init__(self, connection: redis.Redis, ttl: int = TTL_SECONDS) -> None:
        self.redis = connection
        self.ttl = ttl

    @staticmethod
    def _card_key(key: str) -> str:
        return f"pointpass:pkpass:{key.split('-', 1)[0]}-"

    @staticmethod
    def _pack(key: str, data: bytes) -> bytes:
        return key.encode() + b"\n" + data

    @staticmethod
    def _unpack(key: str, value: object) -> bytes | None:
        """The pass in a card's ``value`` (``<key>\\n<bytes>``) if it is version ``key``."""
        if not value:
            return None
        stored_key, _, data = bytes(value).partition(b"\n")  # type: ignore[call-overload]
        return data if stored_key == key.encode() else None

    def get(self, key: str) -> bytes | None:
        return self._unpack(key, self.redis.get(self._card_key(key)))

    def put(self, key: str, data: bytes, replaces_prefix: str) -> None:
        self.redis.set(self._card_key(key), self._pack(key, data), ex=self.ttl)

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        """:meth:`get` of each key, in one round trip (the passes stored are read whole, so a
        pre-build asks this only for a batch of cards that just changed: mostly missing)."""
        if not keys:
            return []
        values = self.redis.mget([self._card_key(key) for key in keys])
        return [self._unpack(key, value)
                for key, value in zip(keys, values, strict=True)]  # type: ignore[arg-type]

    def put_many(self, passes: list[tuple[str, bytes, str]]) -> None:
        """:meth:`put` of each pass, in one round trip."""
        pipeline = self.redis.pipeline(transaction=False)
        for key, data, _ in passes:
            pipeline.set(self._card_key(key), self._pack(key, data), ex=self.ttl)
        pipeline.execute()

    def forget(self, prefix: str) -> None:
        # The card's key, and any a release that kept one key per version left behind.
        keys = list(self.redis.scan_iter(match=f"pointpass:pkpass:{prefix}*", count=100))
        if keys:
            self.redis.delete(*keys)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        with self.redis.lock(f"pointpass:pkpass-lock:{name}", timeout=30, blocking_timeout=30):
            yield
