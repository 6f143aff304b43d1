"""Commands: board."""

from __future__ import annotations
