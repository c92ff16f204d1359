"""Modules imported on first use, for modules that need them only on some paths.

    pl = LazyModule("polars")   # polars is imported when `pl.DataFrame` is first looked up

Importing polars costs about 0.2 s of CPU; `ra -w - tcp` reads, filters and copies records
with numpy only, so the reader (records.codec) names polars this way.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for module `name`; the first attribute looked up imports it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:  # noqa: ANN401 - whatever the module holds
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"LazyModule({self._name!r})"
