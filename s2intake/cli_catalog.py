"""``s2intake catalog ...`` commands (Intake catalogs).

Catalogs are opened with :func:`s2intake.open_catalog`, so a catalog given on the command
line can not run code (no ``shell()``, no python YAML tags, no foreign drivers). Parameter
values given with ``-p key=value`` are read as YAML scalars/lists with ``yaml.safe_load``
(``-p max_cloud=20``, ``-p bands=[red,nir]`` or ``-p bands=red,nir``); dates stay text.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
import yaml

from .errors import CatalogError

_PARAM_HELP = ("Entry parameter as key=value (repeatable), e.g. -p max_cloud=20 "
               "-p start=2020-09-01 -p bands=red,nir.")


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` pairs -> dict; values are safe-loaded YAML (dates kept as text)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{pair!r}: expected key=value", param_hint="-p")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.constructor.ConstructorError:
            raise click.BadParameter(f"{key}: YAML tags are not allowed in values",
                                     param_hint="-p") from None
        except yaml.YAMLError:
            value = text
        if isinstance(value, dt.date | dt.datetime) or value is None:
            value = text.strip()
        out[key] = value
    return out


def _is_v2(cat: Any) -> bool:
    return hasattr(cat, "entries") and hasattr(cat, "aliases") and not hasattr(cat, "_entries")


def _v2_names(cat: Any) -> list[str]:
    names = list(cat.aliases)
    names += [t for t in cat.entries if t not in set(cat.aliases.values())]
    return names


def _v2_entry(cat: Any, name: str) -> Any:
    token = cat.aliases.get(name, name)
    if token not in cat.entries:
        raise CatalogError(f"no entry {name!r} in the catalog; it has "
                           + ", ".join(_v2_names(cat)))
    return cat.entries[token]


def _walk(cat: Any, depth: int, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(dotted name, container, description)`` of every entry, descending into catalogs."""
    rows: list[tuple[str, str, str]] = []
    if _is_v2(cat):
        for name in _v2_names(cat):
            desc = _v2_entry(cat, name)
            rows.append((prefix + name, str(desc.output_instance or "reader"),
                         str(desc.metadata.get("description", ""))))
        return rows
    for name, entry in cat._entries.items():
        container = getattr(entry, "_container", None) or "?"
        description = (entry.describe().get("description") or "").strip()
        rows.append((prefix + name, container, description))
        if container == "catalog" and depth > 1:
            rows.extend(_walk(entry(), depth - 1, f"{prefix}{name}."))
    return rows


def _v1_entry(cat: Any, dotted: str) -> Any:
    """The v1 catalog *entry* (not a source) at a dotted path such as ``index.berry_creek``."""
    parts = dotted.split(".")
    here = cat
    for i, part in enumerate(parts):
        entries = here._entries
        if part not in entries:
            known = ", ".join(entries) or "no entries"
            where = ".".join(parts[:i]) or "the catalog"
            raise CatalogError(f"no entry {part!r} in {where}; it has {known}")
        entry = entries[part]
        if i == len(parts) - 1:
            return entry
        if getattr(entry, "_container", None) != "catalog":
            raise CatalogError(f"entry {'.'.join(parts[:i + 1])!r} is not a catalog")
        here = entry()
    raise CatalogError(f"empty entry name {dotted!r}")  # pragma: no cover


def open_entry(cat: Any, entry: str, params: dict[str, Any]) -> Any:
    """The :class:`~s2intake.intake_source.Sentinel2Source` of ``entry`` with ``params``.

    Parameters
    ----------
    cat:
        A catalog from :func:`s2intake.open_catalog` (v1 or intake 2).
    entry:
        Entry name; dotted (``berry_creek.after_fire``) inside nested v1 catalogs.
    params:
        Parameter values for the entry.
    """
    from .intake_source import Sentinel2Source

    if _is_v2(cat):
        _v2_entry(cat, entry)
        reader = cat(**params)[entry] if params else cat[entry]
        source = getattr(reader, "source", None)
        if source is None:
            raise CatalogError(f"catalog entry {entry!r} is not a Sentinel-2 entry")
        return source()
    source = _v1_entry(cat, entry)(**params)
    if not isinstance(source, Sentinel2Source):
        raise CatalogError(f"catalog entry {entry!r} is a {type(source).__name__}, not a "
                           "Sentinel-2 entry (driver sentinel2)")
    return source


def _parameters(cat: Any, entry: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(description dict, parameter dicts) of an entry, for ``show``."""
    if _is_v2(cat):
        desc = _v2_entry(cat, entry)
        ups = dict(cat.user_parameters)
        ups.update(desc.user_parameters)
        params = []
        for name, up in ups.items():
            if not hasattr(up, "default"):
                continue  # CATALOG_DIR and friends: plain values
            params.append({"name": name, "type": getattr(up, "dtype", "any"),
                           "default": up.default, "description": up.description})
        info = {"description": desc.metadata.get("description", ""), "driver": desc.reader,
                "args": desc.kwargs}
        return info, params
    item = _v1_entry(cat, entry)
    described = item.describe()
    names = {p["name"] for p in described.get("user_parameters", [])}
    shared = [up.describe() for name, up in getattr(cat, "user_parameters", {}).items()
              if name not in names and hasattr(up, "describe")]
    driver = described.get("driver")
    if isinstance(driver, list):
        driver = ", ".join(map(str, driver))
    info = {"description": described.get("description") or "", "driver": driver,
            "args": described.get("args")}
    return info, shared + list(described.get("user_parameters", []))


def _print_parameters(params: list[dict[str, Any]]) -> None:
    if not params:
        click.echo("parameters: none")
        return
    click.echo("parameters:")
    for p in params:
        bounds = "".join(f", {k} {p[k]!r}" for k in ("min", "max", "allowed") if k in p)
        click.echo(f"  {p['name']} ({p.get('type', 'any')}, default {p.get('default')!r}"
                   f"{bounds})")
        if p.get("description"):
            click.echo(f"      {' '.join(str(p['description']).split())}")


@click.group()
def catalog() -> None:
    """Work with Intake YAML catalogs of Sentinel-2 entries.

    \b
    Examples:
      s2intake catalog list catalogs/index.yaml
      s2intake catalog show catalogs/berry_creek.yaml after_fire -p max_cloud=20
      s2intake catalog gif catalogs/berry_creek.yaml berry_creek fire.gif -p max_cloud=10
    """


@catalog.command("list")
@click.argument("catalog_path", metavar="CATALOG")
@click.option("--depth", default=3, show_default=True,
              help="Levels of nested catalogs to descend into.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def list_entries(catalog_path: str, depth: int, fmt: str) -> None:
    """List the entries of CATALOG (nested catalogs as dotted names). Runs no search."""
    from .intake_source import open_catalog

    rows = _walk(open_catalog(catalog_path), depth)
    if fmt == "json":
        click.echo(json.dumps([{"name": n, "container": c, "description": d}
                               for n, c, d in rows], indent=2))
        return
    width = max((len(n) for n, _, _ in rows), default=4)
    for name, container, description in rows:
        first = " ".join(description.split())
        first = first if len(first) <= 70 else first[:67] + "..."
        click.echo(f"{name:<{width}}  {container:<8}  {first}")


@catalog.command("show")
@click.argument("catalog_path", metavar="CATALOG")
@click.argument("entry")
@click.option("--param", "-p", "params", multiple=True, help=_PARAM_HELP)
@click.option("--discover/--no-discover", default=True, show_default=True,
              help="Run the search and show the dataset's schema (no pixel is read).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def show(catalog_path: str, entry: str, params: tuple[str, ...], discover: bool,
         fmt: str) -> None:
    """Describe ENTRY of CATALOG: description, parameters and (searching) its schema."""
    from .intake_source import open_catalog

    values = _parse_params(params)
    cat = open_catalog(catalog_path)
    info, parameters = _parameters(cat, entry)
    schema = None
    source = open_entry(cat, entry, values)
    if discover:
        found = source.discover()
        meta = found["metadata"]
        schema = {"dims": found["dims"], "dtype": found["dtype"], "items": found["items"],
                  "npartitions": found["npartitions"], "time_range": meta.get("time_range"),
                  "crs": meta.get("crs"), "resolution": meta.get("resolution"),
                  "url": meta.get("url"), "collection": meta.get("collection")}
    if fmt == "json":
        click.echo(json.dumps({"entry": entry, **info, "parameters": parameters,
                               "values": values, "schema": schema}, indent=2, default=str))
        return
    click.echo(f"entry: {entry}")
    if info.get("description"):
        click.echo(f"description: {' '.join(str(info['description']).split())}")
    click.echo(f"driver: {info.get('driver')}")
    _print_parameters(parameters)
    if values:
        click.echo("values: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    if schema is not None:
        click.echo("schema:")
        click.echo(f"  items: {schema['items']} matched at {schema['url']} "
                   f"({schema['collection']})")
        click.echo("  dims: " + ", ".join(f"{k}={v}" for k, v in schema["dims"].items()))
        click.echo("  dtype: " + ", ".join(f"{k} {v}" for k, v in schema["dtype"].items()))
        if schema["time_range"]:
            click.echo(f"  time: {schema['time_range'][0]} .. {schema['time_range'][1]}")
        click.echo(f"  crs: {schema['crs']} at {schema['resolution']:g} m, "
                   f"{schema['npartitions']} chunks per band")


@catalog.command("gif")
@click.argument("catalog_path", metavar="CATALOG")
@click.argument("entry")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--param", "-p", "params", multiple=True, help=_PARAM_HELP)
@click.option("--clamp", default="1,1500", show_default=True, help="DN range mapped to 0..255.")
@click.option("--fps", default=3.0, show_default=True)
@click.option("--max-size", default=1024, show_default=True, help="Longest frame side, px.")
@click.option("--scheduler", envvar="S2INTAKE_SCHEDULER", default=None,
              help="Dask scheduler tcp://host:port, 'local' (LocalCluster) or 'threads' "
                   "[env S2INTAKE_SCHEDULER].")
@click.option("--progress/--no-progress", default=True, show_default=True)
def gif(catalog_path: str, entry: str, output: Path, params: tuple[str, ...], clamp: str,
        fps: float, max_size: int, scheduler: str | None, progress: bool) -> None:
    """Load ENTRY of CATALOG, clip it to its AOI and write an animated GIF to OUTPUT.

    The first three bands of the entry are drawn as red, green, blue.

    \b
    Example:
      s2intake catalog gif catalogs/berry_creek.yaml after_fire fire.gif -p max_cloud=20
    """
    from .cli import _floats, run_gif
    from .intake_source import open_catalog

    source = open_entry(open_catalog(catalog_path), entry, _parse_params(params))
    ds = source.to_dask()
    click.echo(f"{len(source.search_result)} items matched at {source.search_result.url}",
               err=True)
    bands = list(ds.data_vars)
    if len(bands) > 3:
        ds = ds[bands[:3]]
    path = run_gif(ds, output, fps=fps, clamp=_floats(clamp, 2, "--clamp"),
                   max_size=max_size, scheduler=scheduler, progress=progress)
    click.echo(str(path))
