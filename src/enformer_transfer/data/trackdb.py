"""UCSC trackDb.txt -> the hub's bigWig tracks, read the way the Genome Browser reads them.

- Stanzas are separated by blank lines and start with a ``track`` line; a setting is a word and
  the rest of its line (separated by spaces or tabs); lines may be indented; ``#`` starts a
  comment line; a line ending in ``\\`` continues on the next one.
- A track inherits the settings it does not set from its ``parent`` (``parent NAME`` or ``parent
  NAME on|off``), through every level: composite -> view -> subtrack. ``subGroups`` and
  ``metadata`` (key=value lists) are merged along the chain, the nearer track winning. Names,
  labels, ``bigDataUrl`` and the container settings are a track's own. A ``superTrack`` passes
  nothing down (its children only sit in its folder), as in the browser.
- Containers (composites, views, super tracks, any track named as a parent) are structure, not
  data. Every other stanza that is not fetched is listed with its reason in ``TrackDb.skipped``.
- ``include`` lines (other files spliced in) are refused: the included file is not read.
"""

from __future__ import annotations

import shlex
from typing import NamedTuple

from ..errors import InputError

# a track's own settings, never taken from a parent (everything else is inherited)
_OWN = {"track", "parent", "shortLabel", "longLabel", "bigDataUrl", "priority", "compositeTrack", "superTrack",
        "view", "html", "subGroups", "metadata", "container", "dimensions", "sortOrder"}
_MERGED = ("subGroups", "metadata")  # key=value lists merged along the parent chain
_CONTAINER = ("compositeTrack", "superTrack", "view", "container")


class Stanza(NamedTuple):
    line: int  # where it starts in the file (1-based)
    settings: dict[str, str]


class TrackDb(NamedTuple):
    """The bigWig tracks of a trackDb (one dict per track: identifier, bigDataUrl, shortLabel,
    longLabel and one key per subGroups / metadata key) and every stanza left out, as (name,
    reason)."""

    tracks: list[dict[str, str]]
    skipped: list[tuple[str, str]]


def stanzas(text: str, source: str) -> list[Stanza]:
    """The stanzas of a .ra text, settings in order (a repeated setting: the last one wins)."""
    found, current, start, pending = [], {}, 0, ""
    for number, raw in enumerate(text.splitlines() + [""], 1):
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line:
            if current:
                found.append(Stanza(start, current))
            current = {}
            continue
        if line.startswith("#"):
            continue
        key, value = (line.split(None, 1) + [""])[:2]
        if key == "include":
            raise InputError(f"{source} line {number}: 'include {value}' is not supported; put the included "
                             "file's stanzas into this trackDb (or fetch each trackDb on its own)")
        if not current:
            start = number
        current[key] = value
    return found


def parse_trackdb(text: str, source: str) -> TrackDb:
    """The bigWig tracks of a trackDb's text, with inherited settings (see the module docstring)."""
    records = stanzas(text, source)
    by_name: dict[str, dict[str, str]] = {}
    for stanza in records:
        name = stanza.settings.get("track")
        if name:
            by_name.setdefault(name.split()[0], stanza.settings)
    parents = {_parent(s) for s in by_name.values()} - {None}
    tracks, skipped = [], []
    for stanza in records:
        own = stanza.settings
        first = next(iter(own))
        if first in ("hub", "genome"):  # hub.txt stanzas of a 'useOneFile on' hub
            continue
        if "track" not in own:
            if own.get("bigDataUrl"):
                raise InputError(f"{source} line {stanza.line}: a stanza with bigDataUrl {own['bigDataUrl']!r} has "
                                 "no 'track' line; give every track a name")
            skipped.append((f"line {stanza.line}", f"no 'track' line (starts with {first!r})"))
            continue
        name = own["track"].split()[0] if own["track"].strip() else f"line {stanza.line}"
        if not own["track"].strip():
            skipped.append((name, "the 'track' line has no name"))
            continue
        if not own.get("bigDataUrl"):
            if not (any(own.get(k) for k in _CONTAINER) or name in parents):
                skipped.append((name, "no bigDataUrl"))
            continue
        settings, problem = _inherited(name, by_name, source)
        if problem:
            skipped.append((name, problem))
            continue
        kind = settings.get("type", "").split()
        if not kind:
            skipped.append((name, "no type (neither its own nor a parent's)"))
            continue
        if kind[0].lower() != "bigwig":
            skipped.append((name, f"type {kind[0]}, not bigWig"))
            continue
        row = {"identifier": name, "bigDataUrl": own["bigDataUrl"], "shortLabel": own.get("shortLabel", ""),
               "longLabel": own.get("longLabel", "")}
        for key in _MERGED:
            for pair, value in settings[key].items():
                row.setdefault(pair, value)
        tracks.append(row)
    return TrackDb(tracks, skipped)


def _parent(settings: dict[str, str]) -> str | None:
    words = settings.get("parent", "").split()
    return words[0] if words else None


def _inherited(name: str, by_name: dict[str, dict[str, str]], source: str) -> tuple[dict, str | None]:
    """A track's settings with its parents' (nearest first wins); the merged key=value lists under
    ``subGroups`` / ``metadata`` as dicts. A problem (missing parent, a loop) instead of settings
    when the chain is broken."""
    chain, at = [by_name[name]], by_name[name]
    while (parent := _parent(at)) is not None:
        if parent not in by_name:
            return {}, f"its parent {parent!r} is not in the trackDb"
        at = by_name[parent]
        if any(at is seen for seen in chain):
            return {}, f"its parent chain loops back through {parent!r}"
        if at.get("superTrack", "").split()[:1] == ["on"]:
            break  # a super track passes no settings down
        chain.append(at)
    settings: dict = {key: {} for key in _MERGED}
    for depth, stanza in enumerate(chain):
        for key, value in stanza.items():
            if key in _MERGED:
                for pair, item in _pairs(value, source, name).items():
                    settings[key].setdefault(pair, item)
            elif (depth == 0 or key not in _OWN) and key not in settings:
                settings[key] = value
    return settings, None


def _pairs(value: str, source: str, track: str) -> dict[str, str]:
    try:
        words = shlex.split(value)
    except ValueError:
        raise InputError(f"{source}: track {track!r}: cannot read {value!r} (unbalanced quotes)") from None
    return dict(word.partition("=")[::2] for word in words)
