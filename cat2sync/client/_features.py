"""What the client's server offers: learned once per client, and only when a method needs it.

The client speaks the Caterva2 2026 API and assumes it until an answer shows otherwise.
Where an answer is ambiguous (a 404 from an endpoint that only 2026 servers have names a
missing route *or* a missing path), one request settles it for the client's lifetime:
``GET /api/peer``, which every 2026 server answers and a 2025 server does not have. Other
facts come free with answers the client gets anyway (an ``ETag`` on ``info``, a
``Content-Encoding: blosc2`` on a download).

Each fallback this leads to is logged once per client (logger ``cat2sync.client``), so
that a log says what the client does differently on this server.
"""

from __future__ import annotations

import logging
import threading

from ..errors import NotFound
from ._transport import Transport

__all__ = ["ServerFeatures"]

log = logging.getLogger("cat2sync.client")


class ServerFeatures:
    """The facts one client learned about its server."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport
        self._lock = threading.Lock()
        self._legacy: bool | None = None
        self._noted: set[str] = set()
        #: False once a download asked for ``Accept-Encoding: blosc2`` came back without it.
        self.blosc2_downloads: bool | None = None
        #: Server-side routes seen failing (500) where another route then did the work.
        self.broken: set[str] = set()

    @property
    def legacy(self) -> bool:
        """Whether the server lacks the 2026 API (a Caterva2 2025 server); asks at most once."""
        with self._lock:
            if self._legacy is None:
                self._legacy = self._lacks_peer_endpoint()
            return self._legacy

    @property
    def known_legacy(self) -> bool:
        """Whether the server is already known to lack the 2026 API (never asks)."""
        return self._legacy is True

    def modern(self) -> None:
        """An answer only a 2026 server gives was seen: no need to ask."""
        if self._legacy is None:
            self._legacy = False

    def note(self, key: str, message: str) -> None:
        """Log ``message`` the first time this client falls back for ``key``."""
        with self._lock:
            if key in self._noted:
                return
            self._noted.add(key)
        log.info("%s: %s", self._t.urlbase, message)

    def _lacks_peer_endpoint(self) -> bool:
        try:
            self._t.request("GET", "/api/peer")
        except NotFound:
            return True
        return False
