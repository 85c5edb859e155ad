"""Who acts at the till: an API key (a machine, or a staff key), or a staff member signed in
with a PIN on an enrolled device at a location.

Services that staff call (scan, redeem, earn at the till, undo) take a :class:`TillActor`, so
the API (bearer keys) and the staff pages (sessions) reach them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.auth.keys import Principal


@dataclass(frozen=True)
class TillActor:
    """``kind`` is ``"api_key"`` or ``"staff"``; ``id`` that key's or staff member's id.

    A staff member acts on a till device (``device_id``) at its location (``location_id``,
    in program ``program_id``), in their own ``language``; an API key at none of them.
    """

    kind: str
    id: int
    name: str
    device_id: int | None = None
    location_id: int | None = None
    program_id: int | None = None
    language: str | None = None

    @property
    def actor(self) -> str:
        """What the ledger records as the entry's actor: ``api_key:3``, ``staff:12``."""
        return f"{self.kind}:{self.id}"

    @property
    def key_id(self) -> int | None:
        """The API key's id when an API key acts, else ``None``."""
        return self.id if self.kind == "api_key" else None

    @property
    def staff_member_id(self) -> int | None:
        """The staff member's id when a staff member acts, else ``None``."""
        return self.id if self.kind == "staff" else None

    @classmethod
    def from_key(cls, principal: Principal) -> TillActor:
        return cls(kind="api_key", id=principal.id, name=principal.name)
