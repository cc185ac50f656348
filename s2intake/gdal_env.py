"""GDAL/rasterio settings and retry policy that travel with the Dask graph to the workers.

Everything here is plain, picklable data: a :class:`ReadOptions` is embedded in every read
task, so a remote worker applies the same HTTP settings, retries and credentials as the
client that built the graph. Secrets never appear in its ``repr``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: GDAL options tuned for COGs over HTTP: no directory listing, merged consecutive ranges,
#: HTTP/2 multiplexing where the server offers it, GDAL-level retries on transient statuses.
DEFAULT_GDAL_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "33554432",
    "AWS_NO_SIGN_REQUEST": "YES",
}

_SECRET = re.compile(r"(SECRET|PASSWORD|TOKEN|KEY_ID|ACCESS_KEY|SESSION|AUTH|HEADERS|"
                     r"USERPWD|BEARER|COOKIE)", re.IGNORECASE)

OnError = Literal["raise", "nodata"]


def is_secret(name: str) -> bool:
    """True for option names that carry credentials (keys, tokens, passwords, headers)."""
    return bool(_SECRET.search(name))


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``options`` with credential values replaced by ``'***'``."""
    return {k: ("***" if is_secret(k) else v) for k, v in options.items()}


@dataclass(frozen=True)
class ReadOptions:
    """How pixels are read, on whichever process runs the task.

    Parameters
    ----------
    gdal:
        GDAL configuration options, as ``(name, value)`` pairs (hashable and picklable).
    retries:
        Extra attempts s2intake makes around GDAL's own HTTP retries for one chunk read.
    backoff:
        First wait between those attempts, in seconds; doubles each time.
    on_error:
        ``"raise"`` (default) or ``"nodata"``: fill a failed read with nodata, warn and
        record it, instead of failing the computation.
    allow_local:
        Allow local paths, ``file://`` and ``/vsi...`` hrefs (refused by default for items
        from a remote API).
    """

    gdal: tuple[tuple[str, str], ...] = field(
        default_factory=lambda: tuple(sorted(DEFAULT_GDAL_OPTIONS.items())))
    retries: int = 3
    backoff: float = 0.5
    on_error: OnError = "raise"
    allow_local: bool = False

    @classmethod
    def make(cls, gdal_options: Mapping[str, Any] | None = None, **kwargs: Any) -> ReadOptions:
        """Defaults updated with ``gdal_options`` (``None`` values remove a default)."""
        merged: dict[str, Any] = dict(DEFAULT_GDAL_OPTIONS)
        for key, value in (gdal_options or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        if kwargs.get("on_error", "raise") not in ("raise", "nodata"):
            raise ValueError(f"on_error must be 'raise' or 'nodata', got {kwargs['on_error']!r}")
        return cls(gdal=tuple(sorted(merged.items())), **kwargs)

    def env(self) -> dict[str, str]:
        """The GDAL options as a dict for ``rasterio.Env``."""
        return dict(self.gdal)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in redact(dict(self.gdal)).items())
        return (f"ReadOptions(retries={self.retries}, on_error={self.on_error!r}, "
                f"allow_local={self.allow_local}, gdal={{{shown}}})")

    __str__ = __repr__
