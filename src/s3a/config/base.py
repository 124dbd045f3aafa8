"""The base of every config model: :class:`Block` (unknown keys are errors, values immutable, a
nullable field reads the texts of :data:`NULL_TEXTS` as null) and the strict integer type :data:`Int`."""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

__all__ = ["Block", "Int", "NO_BOOL", "NULL_TEXTS"]

#: the texts a field that may be null reads as null: Snakemake hands every nested value of
#: ``--config key={...}`` over as text, so ``{'soft_model': null}`` (or ``None``) arrives as "null"
NULL_TEXTS = frozenset({"null", "Null", "NULL", "None", "none", "~"})


def _strict_int(value: Any) -> Any:
    """Integers only: a bool is not a count, a numpy integer is one."""
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, not a boolean ({value!r})")
    return int(value) if isinstance(value, np.integer) else value


#: an integer field: no booleans, numpy integers accepted
NO_BOOL = BeforeValidator(_strict_int)
Int = Annotated[int, NO_BOOL]


def _nullable(annotation: Any) -> bool:
    """Whether a field of this type annotation may be None (``X | None``, ``Optional[X]``)."""
    if get_origin(annotation) is Annotated:
        return _nullable(get_args(annotation)[0])
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


class Block(BaseModel):
    """A config block: unknown keys are errors, values are immutable; a field that may be null reads
    the texts of :data:`NULL_TEXTS` as null (the text of a field that may not be null stays text)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=False)

    @model_validator(mode="before")
    @classmethod
    def _null_texts(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        nulls = [
            name
            for name, field in cls.model_fields.items()
            if isinstance(data.get(name), str) and data[name] in NULL_TEXTS and _nullable(field.annotation)
        ]
        return {**data, **dict.fromkeys(nulls)} if nulls else data
