"""A custom event schema for the tests (``--schema tests.schemas:Reading``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from typing import Literal

import pydantic

from beam_pipelines.columnar.timestamps import parse_timestamp


class Reading(pydantic.BaseModel):
    """Sensor readings: only two types, bounded values, ids with a prefix, no extra fields."""

    model_config = pydantic.ConfigDict(extra='forbid', str_strip_whitespace=True)

    event_id: Annotated[str, pydantic.StringConstraints(min_length=3, pattern=r'^r-')]
    event_type: Literal['temp', 'humidity']
    entity_id: str
    timestamp: dt.datetime
    value: Annotated[float, pydantic.Field(ge=-50, le=150)]
    site: str | None = None

    @pydantic.field_validator('timestamp', mode='before')
    @classmethod
    def _timestamp(cls, value):
        return parse_timestamp(value)
