"""Bytes on a topic <-> typed envelopes, with upcasting and one error type for bad input."""

import json
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from pydantic import TypeAdapter, ValidationError

from contracts.commands import Command
from contracts.envelope import Envelope
from contracts.events import Event
from contracts.replies import Reply
from contracts.upcasting import UPCASTERS, Upcaster, upcast

T = TypeVar("T")


class MalformedMessage(ValueError):
    """The bytes are not a valid message for this topic. `reason` is stable and machine-readable."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Codec(Generic[T]):
    def __init__(self, adapter: TypeAdapter[T], upcasters: Mapping[str, Upcaster]) -> None:
        self._adapter = adapter
        self._upcasters = upcasters

    def decode(self, raw: bytes | None) -> T:
        if raw is None:
            raise MalformedMessage("empty_message", "the record has no value")
        try:
            # A message of the current version, the usual case, in one pass (twice as fast as
            # json.loads and validating the dict); an old version or bad input fails here and
            # takes the path below, which upcasts it or says what is wrong.
            return self._adapter.validate_json(raw)
        except ValidationError:
            pass
        try:
            document: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise MalformedMessage("invalid_json", str(error)) from error
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise MalformedMessage("not_an_envelope", "expected an object with a 'data' object")
        document["data"] = upcast(document["data"], self._upcasters)
        try:
            return self._adapter.validate_python(document)
        except ValidationError as error:
            raise MalformedMessage("schema_violation", _summary(error)) from error


def _summary(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']} ({error.error_count()} error(s))"


def codec_for(model: Any, upcasters: Mapping[str, Upcaster] = UPCASTERS) -> Codec[Any]:
    return Codec(TypeAdapter(model), upcasters)


COMMANDS: Codec[Envelope[Command]] = codec_for(Envelope[Command])
EVENTS: Codec[Envelope[Event]] = codec_for(Envelope[Event])
REPLIES: Codec[Envelope[Reply]] = codec_for(Envelope[Reply])
