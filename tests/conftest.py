"""The session's real Caterva2 server and clients come from :mod:`cat2sync.testing`
(registered in the root conftest.py); the user credentials are re-exported here."""

from cat2sync.testing import ADMIN, ALICE, BOB

__all__ = ["ADMIN", "ALICE", "BOB"]
