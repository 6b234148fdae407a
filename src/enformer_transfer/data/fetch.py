"""Stage 1, fetch: BigWig URL lists or UCSC track hubs -> local BigWigs + a targets table.

The only stage that uses the network, and only when asked. Downloads go to ``NAME.partial``
and are renamed once complete and checked to be BigWigs; an interrupted download resumes
with an HTTP range request where the server supports one; finished files are skipped.
"""

from __future__ import annotations

import logging
import os
import shlex
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd

from ..config import TargetsConfig
from ..errors import InputError
from ..fs import safe_filename
from .targets_table import (
    build_targets_table,
    is_bigwig,
    read_metadata_table,
    save_targets_table,
    track_name,
)

log = logging.getLogger("enformer_transfer")
BLOCK = 1 << 20


def read_url_list(path: Path | str) -> pd.DataFrame:
    """A CSV/TSV with a 'url' column (and optional identifier + metadata columns), or a plain
    list of URLs, one per line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: URL list not found")
    text = path.read_text()
    first = text.splitlines()[0] if text.strip() else ""
    if "url" in [c.strip() for c in first.replace("\t", ",").split(",")]:
        table = pd.read_csv(path, sep="\t" if "\t" in first else ",", dtype=str, keep_default_na=False)
    else:
        urls = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        table = pd.DataFrame({"url": urls})
    if table.empty:
        raise InputError(f"{path}: no URLs")
    if "identifier" not in table.columns:
        table["identifier"] = [track_name(urllib.parse.urlparse(u).path) or "track" for u in table["url"]]
    return table


def read_trackdb(source: str) -> pd.DataFrame:
    """BigWig tracks of a UCSC trackDb.txt (local path or URL): identifier (the track name),
    url (bigDataUrl, resolved against the trackDb's location), shortLabel, longLabel and one
    column per subGroups key (for example the cell-type level)."""
    text = _read_text(source)
    base = source if "://" in source else Path(source).resolve().parent.as_uri() + "/"
    rows, current = [], {}
    for line in text.splitlines() + [""]:
        line = line.strip()
        if not line:
            if current.get("bigDataUrl") and current.get("type", "").lower().startswith("bigwig"):
                row = {"identifier": current["track"], "url": urllib.parse.urljoin(base, current["bigDataUrl"]),
                       "shortLabel": current.get("shortLabel", ""), "longLabel": current.get("longLabel", "")}
                for pair in shlex.split(current.get("subGroups", "")):
                    key, _, value = pair.partition("=")
                    row[key] = value
                rows.append(row)
            current = {}
            continue
        if line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        current[key] = value.strip()
    if not rows:
        raise InputError(f"{source}: no bigWig track with a bigDataUrl")
    return pd.DataFrame(rows)


def download(url: str, target: Path) -> Path:
    """``url`` -> ``target`` (skipped when complete), through ``target.partial``, resuming."""
    target = Path(target)
    if target.exists():
        return target
    partial = target.with_name(target.name + ".partial")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = have and getattr(response, "status", 200) == 206
            with open(partial, "ab" if resumed else "wb") as handle:
                while block := response.read(BLOCK):
                    handle.write(block)
    except OSError as err:
        raise InputError(f"{url}: download failed ({err}); rerun the same command to resume") from None
    if not is_bigwig(partial):
        raise InputError(f"{url}: the downloaded file is not a BigWig (kept as {partial} for inspection)")
    os.replace(partial, target)
    return target


def fetch(out_dir: Path | str, urls: Path | str | None = None, trackdb: str | None = None,
          metadata: Path | str | None = None, settings: TargetsConfig | None = None) -> Path:
    """Download the BigWigs of a URL list or a trackDb into OUT/bigwigs and write OUT/targets.tsv."""
    if (urls is None) == (trackdb is None):
        raise InputError("fetch: give exactly one of --urls LIST or --trackdb TRACKDB")
    table = read_url_list(urls) if urls is not None else read_trackdb(trackdb)
    duplicated = table["identifier"][table["identifier"].duplicated()]
    if len(duplicated):
        raise InputError(f"fetch: identifier {duplicated.iloc[0]!r} appears twice; identifiers must be unique")
    out = Path(out_dir)
    (out / "bigwigs").mkdir(parents=True, exist_ok=True)
    files = []
    for i, row in enumerate(table.itertuples(index=False), 1):
        target = out / "bigwigs" / f"{safe_filename(row.identifier)}.bw"
        log.info("fetch %d/%d: %s", i, len(table), row.url)
        files.append(download(row.url, target))
    meta = table.drop(columns=["url"])
    meta["identifier"] = [p.stem for p in files]
    if "longLabel" in meta.columns and "description" not in meta.columns:
        meta["description"] = meta["longLabel"]
    if metadata is not None:
        extra = read_metadata_table(metadata)
        meta = meta.merge(extra, on="identifier", how="left", suffixes=("", "_metadata"))
    settings = settings or TargetsConfig()
    targets = build_targets_table(files, meta, clip=settings.clip, scale=settings.scale, sum_stat=settings.sum_stat,
                                  clip_soft=settings.clip_soft)
    return save_targets_table(targets, out / "targets.tsv")


def _read_text(source: str) -> str:
    if "://" in source:
        with urllib.request.urlopen(source, timeout=60) as response:
            return response.read().decode()
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{source}: trackDb not found")
    return path.read_text()


