"""Commands: mount."""

from __future__ import annotations
