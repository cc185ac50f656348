"""One exception family for everything s2intake raises on purpose."""

from __future__ import annotations


class S2IntakeError(Exception):
    """Base class: every error s2intake raises deliberately derives from this."""


class AOIError(S2IntakeError, ValueError):
    """The area of interest could not be read or is not usable."""


class SearchError(S2IntakeError):
    """A STAC search failed, matched nothing, or was interrupted."""


class EmptySearchError(SearchError):
    """The search ran fine but matched no item."""


class ProfileError(S2IntakeError, ValueError):
    """Unknown collection, band or endpoint profile."""


class StackError(S2IntakeError, ValueError):
    """The items cannot be stacked as asked (bad resolution, CRS, bands...)."""


class ReadError(S2IntakeError, OSError):
    """Reading pixels from an asset failed after retries."""


class RenderError(S2IntakeError, ValueError):
    """RGB or GIF rendering cannot be done with the given input."""


class CatalogError(S2IntakeError, ValueError):
    """An Intake catalog entry or one of its parameters is wrong."""


class SecurityError(S2IntakeError, PermissionError):
    """Input asked for something s2intake refuses by default (local hrefs, code in YAML...)."""
