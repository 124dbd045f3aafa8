"""The base of every config model: :class:`Block` (unknown keys are errors, values immutable) and the
strict integer type :data:`Int`."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict

__all__ = ["Block", "Int", "NO_BOOL"]


def _strict_int(value: Any) -> Any:
    """Integers only: a bool is not a count, a numpy integer is one."""
    if isinstance(value, bool):
        raise ValueError(f"must be an integer, not a boolean ({value!r})")
    return int(value) if isinstance(value, np.integer) else value


#: an integer field: no booleans, numpy integers accepted
NO_BOOL = BeforeValidator(_strict_int)
Int = Annotated[int, NO_BOOL]


class Block(BaseModel):
    """A config block: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=False)
