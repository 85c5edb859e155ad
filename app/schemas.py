"""Shared schema building blocks for the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

from apiflask import fields, validators
from apiflask.schemas import Schema
from marshmallow import RAISE, ValidationError, pre_load

# Ids are PostgreSQL ``integer`` columns: 1 to this. A larger one names nothing.
MAX_ID = 2**31 - 1

NUL_MESSAGE = "Must not contain NUL (U+0000) characters."

# Characters that show nothing themselves but change how the text around them reads: bidi
# marks, embeddings, overrides and isolates (a name with U+202E reads backwards on a pass),
# zero-width spaces and joiners, the word joiner and invisible operators, the BOM, the
# Mongolian vowel separator and interlinear annotation marks. Text fields refuse them.
INVISIBLE_CHARACTERS = (r"\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
                        r"\ufff9-\ufffb")
# A text field's pattern, in the OpenAPI document too: no NUL, none of those. Written with
# escapes, which ECMA 262 (JSON Schema's dialect) and Python read alike.
TEXT_PATTERN = rf"^[^\x00{INVISIBLE_CHARACTERS}]*$"
_INVISIBLE = re.compile(f"[{INVISIBLE_CHARACTERS}]")


def invisible_character(value: str) -> str | None:
    """The first invisible or direction-changing character in ``value``, as ``U+XXXX``."""
    match = _INVISIBLE.search(value)
    return f"U+{ord(match.group()):04X}" if match else None


class PlainText(validators.Regexp):
    """A text field's rule: :data:`TEXT_PATTERN` (the OpenAPI document states it as the
    field's ``pattern``), refused with a message naming the first character at fault."""

    def __init__(self) -> None:
        super().__init__(TEXT_PATTERN)

    def __call__(self, value: str) -> str:
        if self.regex.match(value) is None:
            found = invisible_character(value)
            raise ValidationError(
                f"Must not contain invisible or direction-changing characters ({found} "
                "found)." if found else NUL_MESSAGE)
        return value


class StrictInteger(fields.Integer):
    """A JSON integer: refuses strings, fractions and booleans (JSON ``true`` is not ``1``).
    ``12.0`` is the number 12, as JSON Schema's ``integer`` has it, so it is accepted."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-any-return]


class StrictBoolean(fields.Boolean):
    """Only JSON ``true`` or ``false`` (not ``1`` or ``0``, which Python counts as equal)."""

    truthy = {True}
    falsy = {False}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def _nul_paths(value: Any, path: str = "") -> Iterator[str]:
    """Where in a parsed JSON value a string (or key) holds a NUL character."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path or "_schema"
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                yield path or "_schema"
            yield from _nul_paths(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{path}.{index}" if path else str(index))


class InputSchema(Schema):
    """Input schemas refuse unknown fields, and NUL characters anywhere (PostgreSQL cannot
    store them in text).

    ``openapi_rules`` is JSON Schema merged into the schema's OpenAPI component, for rules
    that span fields (checked by the schema's ``validates_schema`` methods), so the document
    says what the service accepts.
    """

    openapi_rules: ClassVar[dict[str, Any]] = {}

    class Meta:
        unknown = RAISE

    @pre_load
    def _refuse_nul(self, data: Any, **kwargs: Any) -> Any:
        paths = list(_nul_paths(data))
        if paths:
            raise ValidationError({path: [NUL_MESSAGE] for path in paths})
        return data


class QuerySchema(InputSchema):
    """An input schema for a query string that refuses parameters it does not know (query
    strings reach the schema with unknown names let through)."""

    @pre_load
    def _known_parameters(self, data: Any, **kwargs: Any) -> Any:
        unknown = sorted(set(data.keys()) - set(self.fields))
        if unknown:
            raise ValidationError({name: ["Unknown parameter."] for name in unknown})
        return data


def text(max_length: int, **kwargs: Any) -> fields.String:
    """A text field of 1 to ``max_length`` characters, none of them NUL or invisible."""
    return fields.String(validate=[validators.Length(min=1, max=max_length), PlainText()],
                         **kwargs)


HEX_COLOR = validators.Regexp(r"^#[0-9A-Fa-f]{6}$", error="Must be a colour like #1F2937.")


def input_schemas() -> Iterator[type[InputSchema]]:
    """Every input schema class defined so far."""
    pending: list[type[InputSchema]] = [InputSchema]
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())
