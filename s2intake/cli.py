"""``s2intake`` command line: the same functions as the library, for the shell."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import EmptySearchError, S2IntakeError

EXIT_ERROR = 1
EXIT_EMPTY = 3


def _fail(exc: BaseException) -> None:
    click.echo(f"s2intake: error: {exc}", err=True)
    sys.exit(EXIT_EMPTY if isinstance(exc, EmptySearchError) else EXIT_ERROR)


class _Group(click.Group):
    """Turns s2intake errors into one clear line and an exit code, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except S2IntakeError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo("s2intake: interrupted", err=True)
            sys.exit(130)


def _floats(text: str | None, count: int, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{name} wants {count} comma-separated numbers") from None
    if len(values) != count:
        raise click.BadParameter(f"{name} wants {count} comma-separated numbers")
    return values


def _query(terms: tuple[str, ...]) -> list[str] | None:
    return list(terms) or None


def _search_options(fn: Callable) -> Callable:
    options = [
        click.option("--datetime", "-d", "datetime_", default=None,
                     help="Date range, e.g. 2020-01-01/2021-06-30."),
        click.option("--max-cloud", "-c", type=click.FloatRange(0, 100), default=None,
                     help="Largest eo:cloud_cover in percent."),
        click.option("--collection", default=None,
                     help="Collection id (default: sentinel-2-l2a, or sentinel-s2-l2a-cogs "
                          "for a /v0 URL)."),
        click.option("--url", envvar="S2INTAKE_STAC_URL", default=None,
                     help="STAC API root or local item file [env S2INTAKE_STAC_URL; default "
                          "Earth Search v1]."),
        click.option("--query", "-q", multiple=True,
                     help="Extra property filter, e.g. -q 'sentinel:grid_square=FJ'."),
        click.option("--filter", "filter_", default=None,
                     help="CQL2-JSON filter (only for APIs that declare the filter extension)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="s2intake")
def main() -> None:
    """Sentinel-2 L2A from Earth Search as lazy xarray datasets, clipped, rendered, animated.

    \b
    Examples:
      s2intake demo                                  # embedded Berry Creek sample -> GIF
      s2intake search catalogs/berry_creek.geojson -d 2020-01-01/2021-06-30 -c 10
      s2intake gif catalogs/berry_creek.geojson fire.gif -d 2020-06-01/2020-12-31 -c 10
    """


@main.command()
@click.argument("aoi")
@_search_options
@click.option("--limit", default=100, show_default=True, help="Page size.")
@click.option("--max-items", type=int, default=None, help="Stop after this many items.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "ids"]), default="table",
              show_default=True)
def search(aoi: str, datetime_: str | None, max_cloud: float | None, collection: str | None,
           url: str | None, query: tuple[str, ...], filter_: str | None, limit: int,
           max_items: int | None, fmt: str) -> None:
    """Search for items over AOI (a GeoJSON file) and print the items table.

    \b
    Example:
      s2intake search aoi.geojson -d 2020-09-01/2020-09-30 -c 20 -q sentinel:grid_square=FJ
    """
    from .items import items_to_geodataframe
    from .search import search as run_search

    found = run_search(aoi, datetime_, max_cloud=max_cloud, collection=collection, url=url,
                       query=_query(query), filter=json.loads(filter_) if filter_ else None,
                       limit=limit, max_items=max_items,
                       progress=lambda n: click.echo(f"\r{n} items...", nl=False, err=True))
    click.echo("", err=True)
    if fmt == "ids":
        click.echo("\n".join(i["id"] for i in found.items))
    elif fmt == "json":
        click.echo(json.dumps({"type": "FeatureCollection", "features": found.items}))
    else:
        table = items_to_geodataframe(found)
        columns = [c for c in ("id", "properties.eo:cloud_cover", "properties.platform",
                               "properties.grid:code", "properties.sentinel:grid_square")
                   if c in table]
        with _wide_pandas():
            click.echo(table[columns].rename(columns=lambda c: c.split(".", 1)[-1]).to_string())
    click.echo(f"{len(found)} items matched at {found.url}", err=True)


class _wide_pandas:
    def __enter__(self) -> None:
        import pandas as pd

        self._ctx = pd.option_context("display.width", 200, "display.max_rows", 500)
        self._ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def run_gif(ds: Any, output: Path, *, fps: float, clamp: tuple[float, float] | None,
            max_size: int, scheduler: str | None, progress: bool) -> Path:
    """Clip, render and write the GIF of a stack, with a progress bar; shared by commands."""
    from .cluster import compute_context

    clipped = ds.s2.clip_aoi()
    with compute_context(scheduler, echo=lambda m: click.echo(m, err=True)):
        total = clipped.sizes["time"]
        if progress:
            with click.progressbar(length=total, label="frames", file=sys.stderr) as bar:
                state = {"done": 0}

                def tick(done: int, _total: int) -> None:
                    bar.update(done - state["done"])
                    state["done"] = done

                path = clipped.s2.to_gif(output, fps=fps, clamp=clamp, max_size=max_size,
                                         progress=tick)
        else:
            path = clipped.s2.to_gif(output, fps=fps, clamp=clamp, max_size=max_size)
    return path


@main.command()
@click.argument("aoi")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@_search_options
@click.option("--bands", "-b", default="red,green,blue", show_default=True,
              help="Three bands for R,G,B (common names or B04,B03,B02).")
@click.option("--clamp", default="1,1500", show_default=True, help="DN range mapped to 0..255.")
@click.option("--fps", default=3.0, show_default=True)
@click.option("--max-size", default=1024, show_default=True, help="Longest frame side, px.")
@click.option("--resolution", default=10.0, show_default=True, help="Pixel size in metres.")
@click.option("--scheduler", envvar="S2INTAKE_SCHEDULER", default=None,
              help="Dask scheduler tcp://host:port, 'local' (LocalCluster) or 'threads' "
                   "[env S2INTAKE_SCHEDULER].")
@click.option("--progress/--no-progress", default=True, show_default=True)
def gif(aoi: str, output: Path, datetime_: str | None, max_cloud: float | None,
        collection: str | None, url: str | None, query: tuple[str, ...], filter_: str | None,
        bands: str, clamp: str, fps: float, max_size: int, resolution: float,
        scheduler: str | None, progress: bool) -> None:
    """Search over AOI, stack, clip and write an animated GIF to OUTPUT.

    \b
    Example:
      s2intake gif aoi.geojson fire.gif -d 2020-06-01/2021-06-30 -c 10 --fps 4
    """
    from .search import search as run_search
    from .stack import stack

    found = run_search(aoi, datetime_, max_cloud=max_cloud, collection=collection, url=url,
                       query=_query(query), filter=json.loads(filter_) if filter_ else None)
    click.echo(f"{len(found)} items matched at {found.url}", err=True)
    ds = stack(found, bands.split(","), resolution=resolution)
    path = run_gif(ds, output, fps=fps, clamp=_floats(clamp, 2, "--clamp"), max_size=max_size,
                   scheduler=scheduler, progress=progress)
    click.echo(str(path))


def _repo_catalog(name: str) -> Path | None:
    candidate = Path(__file__).resolve().parents[1] / "catalogs" / name
    return candidate if candidate.exists() else None


@main.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("berry_creek.gif"), show_default=True)
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Catalog to use [default: catalogs/berry_creek.yaml].")
@click.option("--max-cloud", type=float, default=10, show_default=True)
@click.option("--scheduler", envvar="S2INTAKE_SCHEDULER", default=None,
              help="Dask scheduler address, 'local' or 'threads' (default).")
def demo(output: Path, catalog_path: Path | None, max_cloud: float,
         scheduler: str | None) -> None:
    """Berry Creek on the embedded sample: catalog entry -> lazy stack -> clip -> GIF.

    Builds the sample first if it is not there (no server, no internet needed).
    """
    import os
    import time

    from .sample import build_sample

    started = time.perf_counter()
    info = build_sample(progress=lambda m: click.echo(m, err=True))
    local_items = info.write_local_items("v1")
    os.environ["S2INTAKE_STAC_URL"] = str(local_items)
    catalog_path = catalog_path or _repo_catalog("berry_creek.yaml")
    if catalog_path is not None:
        from .intake_source import open_catalog

        cat = open_catalog(catalog_path)
        source = cat.berry_creek(max_cloud=max_cloud, url=str(local_items))
        ds = source.to_dask()
        click.echo(f"catalog {catalog_path} entry berry_creek: {ds.sizes['time']} dates, "
                   f"{ds.sizes['y']} x {ds.sizes['x']} px, bands {', '.join(ds.data_vars)}",
                   err=True)
    else:  # installed without the repository's catalogs: same pipeline by hand
        from .sample import AOI_PATH
        from .search import search as run_search
        from .stack import stack

        found = run_search(AOI_PATH, "2020-01-01/2021-06-30", max_cloud=max_cloud,
                           url=str(local_items))
        ds = stack(found, ["red", "green", "blue"])
    path = run_gif(ds, output, fps=3, clamp=(1, 1500), max_size=1024, scheduler=scheduler,
                   progress=True)
    click.echo(f"wrote {path.resolve()} in {time.perf_counter() - started:.1f} s", err=True)
    click.echo(str(path.resolve()))


@main.group()
def sample() -> None:
    """The embedded Berry Creek sample (synthetic COGs + Earth Search v1/v0 items)."""


@sample.command("build")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write it [default ~/.cache/s2intake/sample].")
@click.option("--dense", is_flag=True, help="Full-size dense COGs (for benchmarks; slow).")
@click.option("--dates", type=int, default=None, help="Number of acquisitions.")
@click.option("--force", is_flag=True, help="Rebuild even if present.")
def sample_build(root: Path | None, dense: bool, dates: int | None, force: bool) -> None:
    """Build the sample (idempotent) and print where it is."""
    from .sample import build_sample

    info = build_sample(root, dense=dense, n_dates=dates, force=force,
                        progress=lambda m: click.echo(m, err=True))
    click.echo(str(info.root))


def _register_subcommands() -> None:
    from .cli_catalog import catalog
    from .cli_freeze import freeze

    main.add_command(catalog)
    main.add_command(freeze)


_register_subcommands()

if __name__ == "__main__":  # pragma: no cover
    main()
