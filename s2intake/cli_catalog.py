"""``s2intake catalog ...`` commands (Intake catalogs)."""

from __future__ import annotations

import click


@click.group()
def catalog() -> None:
    """Work with Intake YAML catalogs of Sentinel-2 entries."""
