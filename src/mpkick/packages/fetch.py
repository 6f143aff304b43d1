"""The one place mpkick reaches the network: fetch, cache, and serve the cache offline.

Installs are repeated on many boards, often where the network is poor; a cache keyed by URL makes
the second install of the same package work offline, and a single module means a single set of
error messages a user can act on.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from .. import __version__
from ..errors import MpkickError
from ..memory import cachedir

TIMEOUT = 30.0


class FetchError(MpkickError):
    """A URL could not be fetched and no cached copy of it exists."""


class NotFound(FetchError):
    """The server answered 404: the package, version or file is not there."""


def _slot(url: str) -> Path:
    key = hashlib.sha256(url.encode()).hexdigest()
    return cachedir.cache_dir("fetch") / key[:2] / key


def cached(url: str) -> bytes | None:
    """The cached bytes of ``url``, if it was fetched before."""
    return cachedir.load(_slot(url))


def fetch(url: str, *, refresh: bool = True, timeout: float = TIMEOUT) -> bytes:
    """The body of ``url``.

    ``refresh=False`` serves a cached copy without asking the server (for content addressed by
    hash or by a pinned version); otherwise the server is asked and the cache serves only when it
    cannot be reached. A 404 is never papered over by the cache: the server said "gone".
    """
    if not refresh:
        hit = cached(url)
        if hit is not None:
            return hit
    request = urllib.request.Request(url, headers={"User-Agent": f"mpkick/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise NotFound(f"not found: {url}") from exc
        return _offline(url, f"the server answered {exc.code} {exc.reason}", exc)
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        return _offline(url, f"cannot reach the server ({reason})", exc)
    except ValueError as exc:
        raise FetchError(f"{url} is not a URL mpkick can fetch: {exc}") from exc
    cachedir.store(_slot(url), data)
    return data


def _offline(url: str, why: str, exc: Exception) -> bytes:
    hit = cached(url)
    if hit is not None:
        return hit
    raise FetchError(f"{url}: {why}, and it is not in the cache; check the network or the URL")\
        from exc
