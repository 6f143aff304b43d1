"""Commands: watch."""

from __future__ import annotations
