"""cat2sync: keep Blosc2/HDF5 array data flowing between lab machines and Caterva2 servers."""

from importlib import metadata as _metadata

from .client import Client, Dataset, File, Group, RemotePath, Root
from .errors import (
    AuthenticationError,
    BadRequest,
    Cat2Error,
    ConfigError,
    ManifestError,
    NotFound,
    PermissionDenied,
    PluginError,
    Remedy,
    RemoteError,
    ServerError,
    SettingError,
    Timeout,
    TransportError,
    Unsupported,
)
from .plugins.hookspecs import hookimpl

try:
    __version__ = _metadata.version("cat2sync")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "AuthenticationError",
    "BadRequest",
    "Cat2Error",
    "Client",
    "ConfigError",
    "Dataset",
    "File",
    "Group",
    "ManifestError",
    "NotFound",
    "PermissionDenied",
    "PluginError",
    "Remedy",
    "RemoteError",
    "RemotePath",
    "Root",
    "ServerError",
    "SettingError",
    "Timeout",
    "TransportError",
    "Unsupported",
    "__version__",
    "hookimpl",
]
