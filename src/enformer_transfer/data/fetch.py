"""Stage 1, fetch: BigWig URL lists or UCSC track hubs -> local BigWigs + a targets table.

The only stage that uses the network, and only when asked.

A hub or URL list is untrusted input, so every track's location is checked before any byte is
read (``resolve_location``):

- a remote trackDb (http/https) may only point at http(s) URLs; a relative ``bigDataUrl`` is
  resolved against the trackDb's own URL and may not climb above the server's root;
- a local trackDb or URL list (a file the user gave) may also name local BigWigs, as paths
  relative to its folder (or ``file://`` URLs); they must lie inside that folder unless
  ``allow_local_paths`` (``--allow-local-paths``);
- every other scheme is refused, and redirects are followed to http(s) only;
- every connection, the first and each redirect, goes only to public internet addresses, checked
  after DNS resolution (``_network``): not this machine, its private network or a cloud metadata
  service, unless ``allow_private_network`` (``--allow-private-network``, for a lab-internal hub).

Tracks get file names from their identifiers (``bigwig_filename``: safe characters, at most
``NAME_BYTES`` bytes, longer names cut and made unique with a hash of the whole name).

Local tracks are copied into OUT/bigwigs (so the run depends on OUT alone), through the same
checks as downloads. A download streams to ``NAME.partial.bw``; its length must match the server's
Content-Length / Content-Range (a short read keeps the part, and a rerun resumes it with an HTTP
range request); the complete file must pass ``validate_bigwig`` before it is renamed.
OUT/fetch.json records every file's url, name, size and SHA-256; a rerun re-verifies every
finished file against it (size, SHA-256, ``validate_bigwig``) and downloads again, with a
warning, anything that differs or has no record.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd

from ..errors import InputError, IntegrityError
from ..fs import (
    disk_errors,
    fsync_file,
    read_json,
    safe_filename,
    temporary_name,
    write_json_atomic,
)
from ..rundir.config import TargetsConfig
from ..rundir.provenance import sha256_of
from ..targets.table import (
    build_targets_table,
    is_bigwig,
    read_metadata_table,
    save_targets_table,
    track_name,
)
from ._network import AddressRefused, opener, resolve_public
from .bigwig import validate_bigwig
from .trackdb import parse_trackdb

log = logging.getLogger("enformer_transfer")
BLOCK = 1 << 20
TIMEOUT = 60.0  # seconds a server may stay silent before a download is abandoned (and resumable)
TRACKDB_LIMIT = 64 << 20  # a larger trackDb is refused: a hostile server could stream forever
RECORD = "fetch.json"
SKIPPED = "skipped_tracks.tsv"  # every trackDb stanza left out, with its reason
NAME_BYTES = 100  # a longer track name is cut to this many bytes (UTF-8) + '-' + 8 hex digits of its SHA-256
WEB = ("http", "https")
_NETWORK_ERRORS = (OSError, http.client.HTTPException)  # HTTPException: IncompleteRead and the like
_RETRY = ("the download was removed: rerun the same command to download it again (if it fails the same way, "
          "the file at the source is damaged)")


# --- where tracks may come from ------------------------------------------------------------

def resolve_location(raw: str, source: str, track: str, allow_local_paths: bool = False) -> str:
    """A track's checked location: an http(s) URL, or an absolute local path when ``source``
    (the trackDb or URL list naming the track) is a local file. Anything else raises an
    ``InputError`` naming the list, the track and the location."""
    raw = str(raw).strip()
    where = f"{source}: track {track!r}: location {raw!r}"
    if not raw:
        raise InputError(f"{where} is empty; give an http(s) URL")
    if _scheme(source) in WEB:
        return _remote_location(raw, source, where)
    return _local_location(raw, Path(source).resolve().parent, where, allow_local_paths)


def _scheme(location: str) -> str:
    return urllib.parse.urlparse(location).scheme.lower()


def _remote_location(raw: str, base: str, where: str) -> str:
    """Only http(s), relative to the hub's own URL: a remote hub must not make us read local files."""
    scheme = _scheme(raw)
    if scheme and scheme not in WEB:
        raise InputError(f"{where} is refused: a remote hub may only point at http(s) URLs, not {scheme}:; "
                         "remove the track or ask the hub's maintainer to fix it")
    if not scheme and _climbs_above_root(raw, base):
        raise InputError(f"{where} climbs above the root of the hub's server and is refused; "
                         "remove the track or ask the hub's maintainer to fix it")
    url = urllib.parse.urljoin(base, raw)
    if _scheme(url) not in WEB or not urllib.parse.urlparse(url).netloc:
        raise InputError(f"{where} does not resolve to an http(s) URL ({url}); remove the track")
    return url


def _climbs_above_root(raw: str, base: str) -> bool:
    """Whether a relative reference has more '..' than the path it is resolved against (urljoin
    silently stops at the root, so the hub would not get what it wrote)."""
    ref = urllib.parse.urlparse(raw)
    if ref.netloc:  # //host/path: a path on another server, from its root
        return False
    path = ref.path if ref.path.startswith("/") else urllib.parse.urlparse(base).path.rpartition("/")[0] + "/" + ref.path
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _local_location(raw: str, folder: Path, where: str, allow_local_paths: bool) -> str:
    """http(s) URLs, or local files inside ``folder`` (anywhere with ``allow_local_paths``)."""
    parsed = urllib.parse.urlparse(raw)
    scheme = parsed.scheme.lower()
    if scheme in WEB:
        if not parsed.netloc:
            raise InputError(f"{where} has no host; give a full http(s) URL")
        return raw
    if scheme == "file" and parsed.netloc in ("", "localhost"):
        path = Path(urllib.request.url2pathname(parsed.path))
    elif scheme:
        raise InputError(f"{where} is refused: only http(s) URLs and local paths are allowed, not {scheme}:")
    else:
        path = Path(raw)
    path = (folder / path).resolve()  # an absolute path stays itself
    if not allow_local_paths and not path.is_relative_to(folder):
        raise InputError(f"{where} is outside {folder}, the folder of the list naming it; move the file "
                         "inside that folder, or pass --allow-local-paths to allow local files anywhere")
    if not path.is_file():
        raise InputError(f"{where}: local file {path} not found; fix the path")
    return str(path)


def _local_source(source: str) -> str:
    """A trackDb given as file://PATH is the local file PATH; other schemes than http(s) are refused."""
    scheme = _scheme(source)
    if scheme == "file":
        return urllib.request.url2pathname(urllib.parse.urlparse(source).path)
    if scheme and scheme not in WEB:
        raise InputError(f"{source}: a trackDb must be an http(s) URL or a local path, not {scheme}:")
    return source


# --- track lists ---------------------------------------------------------------------------

def read_url_list(path: Path | str, allow_local_paths: bool = False) -> pd.DataFrame:
    """A CSV/TSV with a 'url' column (and optional identifier + metadata columns), or a plain
    list of URLs, one per line. Every url is checked with ``resolve_location`` (http(s), or local
    paths inside the list's folder)."""
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
    table["url"] = [resolve_location(u, str(path), ident, allow_local_paths)
                    for u, ident in zip(table["url"], table["identifier"], strict=True)]
    return table


def read_trackdb(source: str, allow_local_paths: bool = False, allow_private_network: bool = False
                 ) -> pd.DataFrame:
    """BigWig tracks of a UCSC trackDb.txt (local path or http(s) URL), read as the Genome Browser
    reads it (``trackdb.parse_trackdb``: indentation, continuation lines, settings inherited
    through ``parent`` chains): identifier (the track name), url (bigDataUrl, checked and resolved
    by ``resolve_location``), shortLabel, longLabel and one column per subGroups / metadata key
    (for example the cell-type level). Stanzas left out are in ``table.attrs['skipped']`` as
    (name, reason) pairs, and said on the console."""
    source = _local_source(str(source))
    hub = parse_trackdb(_read_text(source, allow_private_network), source)
    if hub.skipped:
        shown = ", ".join(f"{name!r} ({reason})" for name, reason in hub.skipped[:3])
        log.warning("%s: %d stanza(s) skipped: %s%s", source, len(hub.skipped), shown,
                    "; ..." if len(hub.skipped) > 3 else "")
        for name, reason in hub.skipped:
            log.debug("%s: skipped %s: %s", source, name, reason)
    if not hub.tracks:
        raise InputError(f"{source}: no bigWig track with a bigDataUrl"
                         + (f" ({len(hub.skipped)} stanza(s) skipped, e.g. {hub.skipped[0][0]}: {hub.skipped[0][1]})"
                            if hub.skipped else ""))
    rows = [{"identifier": t["identifier"],
             "url": resolve_location(t["bigDataUrl"], source, t["identifier"], allow_local_paths),
             **{k: v for k, v in t.items() if k not in ("identifier", "bigDataUrl", "url")}} for t in hub.tracks]
    table = pd.DataFrame(rows)
    table.attrs["skipped"] = hub.skipped
    return table


def _read_text(source: str, allow_private_network: bool = False) -> str:
    if _scheme(source) in WEB:
        try:
            with opener(allow_private_network).open(source, timeout=TIMEOUT) as response:
                data = response.read(TRACKDB_LIMIT + 1)
        except _NETWORK_ERRORS as err:
            raise InputError(f"{source}: cannot download the trackDb ({err}); check the URL and rerun") from None
        if len(data) > TRACKDB_LIMIT:
            raise InputError(f"{source}: the trackDb is larger than {TRACKDB_LIMIT >> 20} MB; is it a trackDb?")
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{source}: trackDb not found")
        data = path.read_bytes()
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InputError(f"{source}: not a text file (UTF-8); give a UCSC trackDb.txt") from None


# --- downloads -----------------------------------------------------------------------------

def download(location: str, target: Path, what: str = "", timeout: float | None = None,
             allow_private_network: bool = False) -> Path:
    """``location`` (an http(s) URL or a local path already checked by ``resolve_location``) ->
    ``target``, through ``NAME.partial.bw``: resumed where a server supports ranges, its length
    checked, validated as a BigWig, then renamed. ``what`` names the track in messages. Every
    connection goes to a public address unless ``allow_private_network`` (``_network``)."""
    target = Path(target)
    partial = temporary_name(target)  # NAME.partial.bw: pybigtools picks the format from the suffix
    what = what or location
    if _scheme(location) in WEB:
        _download_http(location, partial, what, TIMEOUT if timeout is None else timeout, allow_private_network)
    else:
        _copy_local(Path(location), partial, what)
    try:
        validate_bigwig(partial, what, fix=_RETRY)
    except (IntegrityError, InputError):
        partial.unlink(missing_ok=True)  # complete but wrong: resuming it cannot help
        raise
    fsync_file(partial)
    os.replace(partial, target)
    return target


def _download_http(url: str, partial: Path, what: str, timeout: float, allow_private_network: bool) -> None:
    have = _resumable_size(partial)
    try:
        with disk_errors(partial):
            got, expected = _stream(url, partial, have, timeout, allow_private_network)
    except _NETWORK_ERRORS as err:
        raise InputError(f"{what}: download failed ({err or type(err).__name__}); "
                         "rerun the same command to resume") from None
    if expected is not None and got < expected:
        raise InputError(f"{what}: the server closed the connection after {got} of {expected} bytes; the part is "
                         f"kept in {partial}: rerun the same command to resume")
    if expected is not None and got > expected:
        partial.unlink(missing_ok=True)
        raise InputError(f"{what}: the server sent {got} bytes but announced {expected}; {_RETRY}")


def _resumable_size(partial: Path) -> int:
    """Bytes of an earlier interrupted download worth resuming (0 when none, or when they are not
    the start of a BigWig, such as an error page)."""
    if not partial.is_file():
        return 0
    if partial.stat().st_size >= 4 and not is_bigwig(partial):
        partial.unlink()
        return 0
    return partial.stat().st_size


def _stream(url: str, partial: Path, have: int, timeout: float, allow_private_network: bool
            ) -> tuple[int, int | None]:
    """Write the body into ``partial`` (appending to ``have`` bytes when the server answers the
    range request exactly); returns the bytes now in the file and the file's announced size."""
    for _attempt in range(2):  # the second attempt starts from zero
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            response = opener(allow_private_network).open(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            if have and err.code == 416:  # our part is no prefix of the file: start over
                err.close()
                have = 0
                continue
            raise
        with response:
            span = _body_span(response, have)
            if span is None:  # a range answer that does not continue our part: start over
                have = 0
                continue
            start, expected = span
            got = start
            with open(partial, "ab" if start else "wb") as handle:
                while block := response.read(BLOCK):
                    handle.write(block)
                    got += len(block)
            return got, expected
    raise InputError(f"{url}: the server answers range requests inconsistently; remove {partial} and rerun")


def _body_span(response, have: int) -> tuple[int, int | None] | None:
    """(byte of the file where the body starts, the file's size or None when not announced), or
    None when a partial answer (206) does not start exactly at ``have``."""
    length = _header_int(response, "Content-Length")
    if response.status != 206:  # a full answer: a 200 to a range request means start over
        return 0, length
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (response.headers.get("Content-Range") or "").strip())
    if not match or int(match[1]) != have:
        return None
    first, last = int(match[1]), int(match[2])
    if last < first or (length is not None and length != last - first + 1):
        return None
    return have, last + 1 if match[3] == "*" else int(match[3])


def _header_int(response, name: str) -> int | None:
    value = (response.headers.get(name) or "").strip()
    return int(value) if value.isdigit() else None


def _copy_local(source: Path, partial: Path, what: str) -> None:
    try:
        with disk_errors(partial):
            shutil.copyfile(source, partial)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise InputError(f"{what}: cannot copy {source} ({err})") from None
    if partial.stat().st_size != source.stat().st_size:
        partial.unlink(missing_ok=True)
        raise InputError(f"{what}: {source} changed while it was copied; rerun")


# --- the stage -----------------------------------------------------------------------------

def fetch(out_dir: Path | str, urls: Path | str | None = None, trackdb: str | None = None,
          metadata: Path | str | None = None, settings: TargetsConfig | None = None,
          allow_local_paths: bool = False, allow_private_network: bool = False) -> Path:
    """Download the BigWigs of a URL list or a trackDb into OUT/bigwigs, record them in
    OUT/fetch.json and write OUT/targets.tsv (and OUT/skipped_tracks.tsv: the trackDb's stanzas
    left out, with reasons). Every location is checked before anything is read or written;
    files fetched earlier are re-verified and fetched again when they differ."""
    if (urls is None) == (trackdb is None):
        raise InputError("fetch: give exactly one of --urls LIST or --trackdb TRACKDB")
    if urls is not None:
        table = read_url_list(urls, allow_local_paths)
    else:
        table = read_trackdb(trackdb, allow_local_paths, allow_private_network)
    skipped = table.attrs.get("skipped", [])
    if not allow_private_network:
        _check_hosts(table)
    names = [f"bigwigs/{bigwig_filename(i)}" for i in table["identifier"]]
    duplicated = table["identifier"][table["identifier"].duplicated()]
    if len(duplicated):
        raise InputError(f"fetch: identifier {duplicated.iloc[0]!r} appears twice; identifiers must be unique")
    clash = pd.Series(names)[pd.Series(names).duplicated()]
    if len(clash):
        raise InputError(f"fetch: two identifiers share the file name {clash.iloc[0]}; make them differ in "
                         "letters, digits, '-', '_' or '.'")
    out = Path(out_dir)
    (out / "bigwigs").mkdir(parents=True, exist_ok=True)
    if trackdb is not None:
        with disk_errors(out / SKIPPED):
            pd.DataFrame(skipped, columns=["track", "reason"]).to_csv(out / SKIPPED, sep="\t", index=False)
    records = _read_records(out / RECORD)
    files = []
    for i, (row, name) in enumerate(zip(table.itertuples(index=False), names, strict=True), 1):
        target, what = out / name, f"track {row.identifier!r} from {row.url}"
        if _still_valid(target, records.get(name), row.url, what):
            log.info("fetch %d/%d: %s already fetched and verified", i, len(table), row.url)
        else:
            log.info("fetch %d/%d: %s", i, len(table), row.url)
            try:
                download(row.url, target, what, allow_private_network=allow_private_network)
            except AddressRefused as err:
                raise AddressRefused(f"track {row.identifier!r}: {err}") from None
            records[name] = {"url": row.url, "file": name, "size": target.stat().st_size, "sha256": sha256_of(target)}
            write_json_atomic(out / RECORD, {"files": records})
        files.append(target)
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


def bigwig_filename(identifier: str) -> str:
    """A track's BigWig file name: ``fs.safe_filename`` (letters, digits, '-', '_', '.'), no
    leading '.' (no hidden files, no '.' or '..'), and at most ``NAME_BYTES`` bytes of it: a longer
    name is cut and given '-' + 8 hex digits of the SHA-256 of the whole identifier, so it stays
    unique and the same on every run."""
    name = safe_filename(identifier)
    name = "_" * (len(name) - len(name.lstrip("."))) + name.lstrip(".") or "_"
    if len(name.encode()) > NAME_BYTES:
        cut = name.encode()[:NAME_BYTES].decode(errors="ignore")  # never half a character
        name = f"{cut}-{hashlib.sha256(identifier.encode()).hexdigest()[:8]}"
    return f"{name}.bw"


def _check_hosts(table: pd.DataFrame) -> None:
    """Every remote track's host resolves to public addresses only, checked before any download
    (each connection checks again, redirects included); a name that does not resolve now is left
    to its download to report."""
    seen = set()
    for url, identifier in zip(table["url"], table["identifier"], strict=True):
        host = urllib.parse.urlsplit(url).netloc if _scheme(url) in WEB else None
        if host is None or host in seen:
            continue
        seen.add(host)
        try:
            resolve_public(url)
        except AddressRefused as err:
            raise AddressRefused(f"track {identifier!r}: {err}") from None
        except (socket.gaierror, UnicodeError, ValueError):
            pass


def _read_records(path: Path) -> dict:
    """OUT/fetch.json's records by file name ({} when absent; a damaged one is ignored, so every
    file is fetched again)."""
    if not path.is_file():
        return {}
    try:
        records = read_json(path)["files"]
        if isinstance(records, dict):
            return records
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log.warning("%s is damaged; every BigWig will be verified by downloading it again", path)
    return {}


def _still_valid(target: Path, record: dict | None, location: str, what: str) -> bool:
    """Whether a file fetched earlier is still the one recorded (same source, size, SHA-256) and
    a valid BigWig; otherwise it is removed, with a warning, to be fetched again."""
    if not target.exists():
        return False
    if record is None:
        problem = f"has no record in {RECORD} (fetched by an older version, or the record was lost)"
    elif record.get("url") != location:
        problem = f"was fetched from {record.get('url')}"
    elif target.stat().st_size != record.get("size"):
        problem = f"is {target.stat().st_size} bytes, but {record.get('size')} were recorded"
    elif sha256_of(target) != record.get("sha256"):
        problem = "differs from the recorded SHA-256"
    else:
        try:
            validate_bigwig(target, what)
            return True
        except (IntegrityError, InputError) as err:
            problem = f"is damaged ({err})"
    log.warning("%s: %s %s; fetching it again", what, target, problem)
    target.unlink()
    return False
