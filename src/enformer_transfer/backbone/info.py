"""What a backbone folder holds (``backbone info``): its family, package, size, geometry and
the checksums of its weights."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from ..errors import InputError
from ..rundir.layout import BackboneFolder
from ..rundir.provenance import file_fingerprint
from .load import family_of, resolve_backbone


def backbone_info(folder: Path | str) -> dict:
    """kind, package and installed version, parameters, input length, bin size, target bins,
    embedding width, the family's own facts and each weights file's size and sha256."""
    _, path = resolve_backbone(folder)
    family = family_of(path)
    try:
        version = metadata.version(family.package)
    except metadata.PackageNotFoundError:
        version = None
    files = [BackboneFolder(path).config] + BackboneFolder(path).weight_files
    try:
        model = family.load(str(path))
    except InputError as err:  # e.g. Flashzoi without flash-attn: the folder's files can still be checked
        return {"folder": str(path.resolve()), "kind": family.kind, "package": family.package,
                "package_version": version, "not_loadable": str(err),
                "files": [{**file_fingerprint(f), "path": f.name} for f in files]}
    geometry = family.geometry(model)
    return {
        "folder": str(path.resolve()), "kind": family.kind, "package": family.package, "package_version": version,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seq_length": geometry.seq_length, "bin_size": geometry.bin_size, "target_bins": geometry.target_bins,
        "embedding_dim": geometry.embedding_dim, "output_tracks": family.output_tracks(model),
        "architecture": family.describe(model),
        "files": [{**file_fingerprint(f), "path": f.name} for f in files],
    }


def size_text(n_bytes: float) -> str:
    """5,505,024 -> '5.5 MB'; 12,288 -> '12.3 kB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"


def info_lines(info: dict) -> list[str]:
    """``backbone_info`` as lines for a person."""
    if "not_loadable" in info:
        return [f"backbone: {info['folder']}",
                f"  kind            {info['kind']} ({info['package']} {info['package_version'] or 'not installed'})",
                f"  not loadable here: {info['not_loadable']}",
                *[f"  {f['path']:<15} {f['size']:,} bytes, sha256 {f['sha256']}" for f in info["files"]]]
    per_window = size_text(info["target_bins"] * info["embedding_dim"] * 2)
    lines = [
        f"backbone: {info['folder']}",
        f"  kind            {info['kind']} ({info['package']} {info['package_version'] or 'not installed'})",
        f"  parameters      {info['parameters']:,}",
        f"  input length    {info['seq_length']:,} bp",
        f"  bin size        {info['bin_size']:,} bp",
        f"  target bins     {info['target_bins']:,}",
        f"  embedding width {info['embedding_dim']:,} ({info['target_bins']:,} x {info['embedding_dim']:,} float16 = {per_window} per window)",
        f"  own tracks      {info['output_tracks']:,}",
    ]
    if info["architecture"]:
        lines.append("  architecture    " + ", ".join(f"{k} {v}" for k, v in info["architecture"].items()))
    lines += [f"  {f['path']:<15} {f['size']:,} bytes, sha256 {f['sha256']}" for f in info["files"]]
    return lines
