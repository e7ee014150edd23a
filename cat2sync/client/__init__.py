"""The Caterva2 client API (a drop-in for ``caterva2.Client``), built on httpx."""

from ._client import Client
from ._files import TEMP_PREFIX, is_partial
from ._objects import Dataset, File, Group, Root
from ._paths import RemotePath
from ._transport import Credentials, TransferStats

__all__ = [
    "TEMP_PREFIX",
    "Client",
    "Credentials",
    "Dataset",
    "File",
    "Group",
    "RemotePath",
    "Root",
    "TransferStats",
    "is_partial",
]
