"""``s2intake freeze AOI OUTPUT``: search once, write a pinned item snapshot.

Registered in :mod:`s2intake.cli` with::

    from .cli_freeze import freeze
    main.add_command(freeze)

The options repeat those of ``s2intake search`` (this module does not import :mod:`.cli`, so
either module can be imported first).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .errors import EmptySearchError, S2IntakeError

EXIT_ERROR = 1
EXIT_EMPTY = 3


@click.command("freeze")
@click.argument("aoi")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--datetime", "-d", "datetime_", default=None,
              help="Date range, e.g. 2020-01-01/2021-06-30.")
@click.option("--max-cloud", "-c", type=click.FloatRange(0, 100), default=None,
              help="Largest eo:cloud_cover in percent.")
@click.option("--collection", default=None,
              help="Collection id (default: sentinel-2-l2a, or sentinel-s2-l2a-cogs for a /v0 "
                   "URL).")
@click.option("--url", envvar="S2INTAKE_STAC_URL", default=None,
              help="STAC API root or local item file [env S2INTAKE_STAC_URL; default Earth "
                   "Search v1].")
@click.option("--query", "-q", multiple=True,
              help="Extra property filter, e.g. -q 'sentinel:grid_square=FJ'.")
@click.option("--filter", "filter_", default=None,
              help="CQL2-JSON filter (only for APIs that declare the filter extension).")
@click.option("--limit", default=100, show_default=True, help="Page size.")
@click.option("--max-items", type=int, default=None, help="Stop after this many items.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.pass_context
def freeze(ctx: click.Context, aoi: str, output: Path, datetime_: str | None,
           max_cloud: float | None, collection: str | None, url: str | None,
           query: tuple[str, ...], filter_: str | None, limit: int, max_items: int | None,
           force: bool) -> None:
    """Search over AOI (a GeoJSON file) and freeze the items found into OUTPUT.

    OUTPUT is a GeoJSON FeatureCollection of the full items plus an
    "s2intake:snapshot" header (search parameters, source URL, time frozen, item ids,
    checksum), written atomically. Use it offline as a search URL or catalog url:
    s2intake.open_snapshot(OUTPUT), search(..., url=OUTPUT), or in a catalog entry
    url: "{{ CATALOG_DIR }}/berry_creek.snapshot.json". Prints OUTPUT's path.

    \b
    Example:
      s2intake freeze catalogs/berry_creek.geojson catalogs/berry_creek.snapshot.json \\
          -d 2020-01-01/2021-06-30 -c 10
    """
    from .freeze import freeze as write_snapshot
    from .search import search as run_search

    try:
        if output.exists() and not force:
            raise S2IntakeError(f"{output} exists; pass --force to overwrite it")
        try:
            filter_value = json.loads(filter_) if filter_ else None
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not CQL2-JSON: {exc}", param_hint="--filter") from None
        found = run_search(aoi, datetime_, max_cloud=max_cloud, collection=collection, url=url,
                           query=list(query) or None, filter=filter_value, limit=limit,
                           max_items=max_items)
        path = write_snapshot(found, output)
    except S2IntakeError as exc:
        click.echo(f"s2intake: error: {exc}", err=True)
        ctx.exit(EXIT_EMPTY if isinstance(exc, EmptySearchError) else EXIT_ERROR)
    click.echo(f"froze {len(found)} items from {found.url}", err=True)
    click.echo(str(path))
