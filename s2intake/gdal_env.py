"""GDAL/rasterio settings and retry policy that travel with the Dask graph to the workers.

Everything here is plain, picklable data: a :class:`ReadOptions` is embedded in every read
task, so a remote worker applies the same HTTP settings, retries and credentials as the
client that built the graph. Secrets never appear in its ``repr``, and :meth:`ReadOptions.scrub`
removes them from any text (error messages, warnings) before it is shown.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: GDAL options tuned for COGs over HTTP: no directory listing, merged consecutive ranges,
#: HTTP/2 multiplexing where the server offers it, GDAL-level retries on transient statuses
#: (GDAL 3.10 retries these statuses, connection resets, timeouts and truncated bodies,
#: doubling ``GDAL_HTTP_RETRY_DELAY`` each time; it does not honour ``Retry-After``).
DEFAULT_GDAL_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_HTTP_VERSION": "2",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "GDAL_HTTP_MAX_RETRY": "4",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "33554432",
    # Each COG tile is decoded once, so GDAL's block cache (5% of RAM by default) only held
    # memory: 23-date Berry Creek GIF 2.0 GiB -> 1.0 GiB peak RSS at the same speed.
    # GDAL_CACHEMAX is process-wide in GDAL; set it to None to keep yours.
    "GDAL_CACHEMAX": "64",
    "AWS_NO_SIGN_REQUEST": "YES",
}

#: Option names that carry credentials: their values are hidden everywhere.
_SECRET = re.compile(
    r"(SECRET|PASSWORD|PASSPHRASE|TOKEN|KEY_ID|ACCESS_KEY|SESSION|AUTH|HEADERS|USERPWD|"
    r"BEARER|COOKIE|CREDENTIAL|CONNECTION_STRING|SAS|SIGNATURE|(^|_)KEY$)", re.IGNORECASE)
#: URL query parameters that carry credentials (pre-signed URLs, SAS tokens, API keys).
_SECRET_QUERY = re.compile(
    r"^(x-amz-.*|x-goog-.*|sig|se|sp|sv|st|sr|skoid|sktid|skt|ske|sks|skv|code)$|"
    r"signature|token|key|credential|password|secret|auth|session", re.IGNORECASE)
#: Schemes that start an ``Authorization`` value (the word itself is not secret).
_AUTH_SCHEMES = frozenset({"basic", "bearer", "digest", "token", "negotiate", "aws4-hmac-sha256"})
#: Values shorter than this are not scrubbed from text (too likely to hit ordinary words).
_MIN_SECRET_LENGTH = 4

OnError = Literal["raise", "nodata"]


def is_secret(name: str) -> bool:
    """True for option names that carry credentials (keys, tokens, passwords, headers)."""
    return bool(_SECRET.search(name))


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``options`` with credential values replaced by ``'***'``."""
    return {k: ("***" if is_secret(k) else v) for k, v in options.items()}


def secret_values(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The credential values in ``options`` (and each header value of a headers option).

    Header options (``GDAL_HTTP_HEADERS``, a ``headers`` mapping's values) are split into
    lines and ``Name: value`` pairs, so a token is found even when shown on its own.
    """
    found: set[str] = set()
    for key, value in options.items():
        if value is None or not is_secret(str(key)):
            continue
        text = str(value)
        found.add(text)
        for line in re.split(r"[\r\n]+|\\r\\n", text):
            found.add(line.strip())
            _, sep, rest = line.partition(":")
            if sep:
                found.add(rest.strip())
                parts = rest.split()
                if len(parts) > 1 and parts[0].lower() in _AUTH_SCHEMES:
                    parts = parts[1:]  # "Bearer <token>": the scheme word is no secret
                found.update(parts)
    return tuple(sorted((s for s in found if len(s) >= _MIN_SECRET_LENGTH),
                        key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``'***'``."""
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_LENGTH:
            text = text.replace(secret, "***")
    return text


def redact_url(url: str) -> str:
    """``url`` without a password and with credential-like query values replaced.

    ``https://user:pw@host/a.tif?sig=abc&x=1`` becomes ``https://user:***@host/a.tif?sig=***&x=1``.
    Anything that does not parse as a URL is returned unchanged.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY.search(k) for k, _ in pairs):
            query = "&".join(f"{k}={'***' if _SECRET_QUERY.search(k) else v}"
                             for k, v in pairs)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_URL_IN_TEXT = re.compile(r"\b(?:https?|s3|gs|az)://[^\s'\"<>]+", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """``text`` with :func:`redact_url` applied to every URL in it (e.g. GDAL messages)."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)


#: AWS credential options rasterio refuses in ``rasterio.Env(...)``; s2intake sets them in
#: the GDAL environment of the read instead (see :func:`s2intake.reader.gdal_environment`).
AWS_CREDENTIAL_OPTIONS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class ReadOptions:
    """How pixels are read, on whichever process runs the task.

    Parameters
    ----------
    gdal:
        GDAL configuration options, as ``(name, value)`` pairs (hashable and picklable).
    retries:
        Extra attempts s2intake makes around GDAL's own HTTP retries for one chunk read
        (each attempt reopens the file after clearing GDAL's cached bytes of it).
    backoff:
        First wait between those attempts, in seconds; doubles each time (with jitter:
        the actual wait is between half and all of it).
    max_backoff:
        Longest single wait, in seconds.
    deadline:
        No new attempt starts once this many seconds have passed since the first one, so a
        read gives up after at most ``deadline`` plus one attempt's duration (bounded by
        GDAL's ``GDAL_HTTP_TIMEOUT`` x (``GDAL_HTTP_MAX_RETRY`` + 1) plus its delays).
    on_error:
        ``"raise"`` (default) or ``"nodata"``: fill a failed read with nodata, warn
        (:class:`~s2intake.reader.ReadFailure`, carrying a
        :class:`~s2intake.reader.FailedRead`) and record it, instead of failing the
        computation. See :func:`s2intake.reader.compute_with_failures`.
    allow_local:
        Allow local paths, ``file://`` and ``/vsi...`` hrefs (refused by default for items
        from a remote API).
    verify_tiles:
        For reads through GDAL: check each DEFLATE tile against the zlib checksum stored with
        it (GDAL does not), so bytes corrupted in transfer are retried instead of returned
        as pixels. The direct reader always checks (libdeflate does, while decoding).
    direct:
        Read COGs on the stack's own grid with s2intake's direct reader (two HTTP requests
        per file, libdeflate decoding; see :mod:`s2intake.cog`) where it applies; ``False``
        reads everything through GDAL.
    """

    gdal: tuple[tuple[str, str], ...] = field(
        default_factory=lambda: tuple(sorted(DEFAULT_GDAL_OPTIONS.items())))
    retries: int = 3
    backoff: float = 0.5
    on_error: OnError = "raise"
    allow_local: bool = False
    max_backoff: float = 8.0
    deadline: float = 120.0
    verify_tiles: bool = True
    direct: bool = True

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "nodata"):
            raise ValueError(f"on_error must be 'raise' or 'nodata', got {self.on_error!r}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0 or self.deadline < 0:
            raise ValueError("backoff, max_backoff and deadline must be >= 0")

    @classmethod
    def make(cls, gdal_options: Mapping[str, Any] | None = None, **kwargs: Any) -> ReadOptions:
        """Defaults updated with ``gdal_options`` (``None`` values remove a default).

        Giving AWS credentials turns the default ``AWS_NO_SIGN_REQUEST=YES`` off, unless
        ``gdal_options`` sets it explicitly.
        """
        merged: dict[str, Any] = dict(DEFAULT_GDAL_OPTIONS)
        given = dict(gdal_options or {})
        if (given.get("AWS_SECRET_ACCESS_KEY") or given.get("AWS_ACCESS_KEY_ID")) \
                and "AWS_NO_SIGN_REQUEST" not in given:
            merged["AWS_NO_SIGN_REQUEST"] = "NO"
        for key, value in given.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        if kwargs.get("on_error", "raise") not in ("raise", "nodata"):
            raise ValueError(f"on_error must be 'raise' or 'nodata', got {kwargs['on_error']!r}")
        return cls(gdal=tuple(sorted(merged.items())), **kwargs)

    def env(self) -> dict[str, str]:
        """The GDAL options as a dict (credentials included; never log it)."""
        return dict(self.gdal)

    def secrets(self) -> tuple[str, ...]:
        """Credential values among the options (see :func:`secret_values`)."""
        return secret_values(dict(self.gdal))

    def scrub(self, text: str) -> str:
        """``text`` with this object's credential values replaced by ``'***'``."""
        return scrub(text, self.secrets())

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in redact(dict(self.gdal)).items())
        return (f"ReadOptions(retries={self.retries}, backoff={self.backoff}, "
                f"max_backoff={self.max_backoff}, deadline={self.deadline}, "
                f"on_error={self.on_error!r}, allow_local={self.allow_local}, "
                f"verify_tiles={self.verify_tiles}, direct={self.direct}, gdal={{{shown}}})")

    __str__ = __repr__
