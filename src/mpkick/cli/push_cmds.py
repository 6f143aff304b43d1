"""Commands: push."""

from __future__ import annotations
