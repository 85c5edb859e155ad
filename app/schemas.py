"""Shared schema building blocks for the API."""

from __future__ import annotations

from typing import Any

from apiflask import fields, validators
from apiflask.schemas import Schema
from marshmallow import RAISE, ValidationError


class StrictInteger(fields.Integer):
    """An integer that refuses strings, floats and booleans (JSON ``true`` is not ``1``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        return super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-any-return]


class StrictBoolean(fields.Boolean):
    """Only JSON ``true`` or ``false``."""

    truthy = {True}
    falsy = {False}


class InputSchema(Schema):
    """Input schemas refuse unknown fields."""

    class Meta:
        unknown = RAISE


def text(max_length: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=validators.Length(min=1, max=max_length), **kwargs)


HEX_COLOR = validators.Regexp(r"^#[0-9A-Fa-f]{6}$", error="Must be a colour like #1F2937.")
