"""Variants from a VCF (plain or bgzip, read with cyvcf2) or a simple TSV (chrom, pos, ref, alt, id),
checked against the genome before any compute.

Each ALT allele of a record is one variant (multi-allelic records are split). Alleles that are
not DNA (``<DEL>``, ``*``, breakends) and exact repeats are left out with a reason; malformed
lines, unknown chromosomes, positions past a chromosome end and REF alleles that differ from the
genome are errors naming the line (REF mismatches can be dropped and listed instead, or flipped
when the ALT allele is the genome's, as baskerville's ``vcf_snps(flip_ref=True)`` does: scored
ALT - REF as the VCF states, the genome's allele being the VCF's ALT).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..genome.chroms import mismatch_message

DNA = re.compile(r"^[ACGTN]+$")
COLUMNS = ["variant", "id", "chrom", "pos", "ref", "alt", "kind", "row"]
SKIPPED_COLUMNS = ["row", "chrom", "pos", "ref", "alt", "id", "reason"]
MISMATCH_COLUMNS = ["row", "variant", "id", "chrom", "pos", "ref", "alt", "genome_ref", "action"]
REF_MISMATCH = ("error", "skip", "flip")
SHOWN = 3  # examples named in an error


@dataclass
class VariantList:
    """Variants read from a file: one row per (record, ALT allele) in file order, and the alleles
    left out with the reason."""

    variants: pd.DataFrame  # COLUMNS
    skipped: pd.DataFrame  # SKIPPED_COLUMNS


def variant_key(chrom: str, pos: int, ref: str, alt: str) -> str:
    """The name of a variant in every table: chrom:pos:ref:alt (pos 1-based, as in the VCF)."""
    return f"{chrom}:{pos}:{ref}:{alt}"


def short_name(variant: str, longest: int = 10) -> str:
    """A variant's name for figures and pages: alleles longer than ``longest`` bases shortened to
    their first bases and length (chr4:73479:CATATGGTCA...(63 bp):TCATCTGTTG...(63 bp))."""
    chrom, pos, ref, alt = variant.rsplit(":", 3)
    cut = [a if len(a) <= longest else f"{a[:longest]}...({len(a)} bp)" for a in (ref, alt)]
    return ":".join([chrom, pos, *cut])


def variant_kind(ref: str, alt: str) -> str:
    if len(ref) == len(alt):
        return "SNV" if len(ref) == 1 else "MNV"
    return "insertion" if len(alt) > len(ref) else "deletion"


def read_variants(path: Path | str) -> VariantList:
    """Variants of a VCF (plain or bgzip) or a TSV, multi-allelic records split."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: variants file not found")
    records = _read_vcf(path) if _is_vcf(path) else _read_tsv(path)
    rows, skipped, seen = [], [], {}
    for row, chrom, pos, ident, ref, alts in records:
        ref = ref.upper()
        if not DNA.match(ref):
            raise InputError(f"{path} line {row}: REF {ref!r} is not a DNA sequence (A, C, G, T, N)")
        for alt in alts:
            alt = (alt or ".").upper()
            reason = None
            if alt == ".":
                reason = "no ALT allele"
            elif not DNA.match(alt):
                reason = "not a DNA allele (symbolic, '*' or breakend): not scored"
            elif alt == ref:
                reason = "ALT equals REF"
            key = variant_key(chrom, pos, ref, alt)
            if reason is None and key in seen:
                reason = f"repeats line {seen[key]}"
            if reason is not None:
                skipped.append((row, chrom, pos, ref, alt, ident, reason))
                continue
            seen[key] = row
            rows.append((key, ident, chrom, pos, ref, alt, variant_kind(ref, alt), row))
    return VariantList(pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(skipped, columns=SKIPPED_COLUMNS))


def _open_text(path: Path):
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", errors="replace") if compressed else open(path, errors="replace")


def _is_vcf(path: Path) -> bool:
    try:
        with _open_text(path) as handle:
            return handle.readline().startswith("##fileformat=VCF")
    except (OSError, EOFError) as err:
        raise InputError(f"{path}: cannot read ({err}); a compressed VCF must be bgzip-compressed") from None


def _header_lines(path: Path) -> int:
    with _open_text(path) as handle:
        count = 0
        for line in handle:
            if not line.startswith("#"):
                break
            count += 1
    return count


@contextlib.contextmanager
def _htslib_messages():
    """Collect what htslib prints on the process's standard error (file descriptor 2) meanwhile."""
    messages: list[str] = []
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            messages.extend(sink.read().decode(errors="replace").splitlines())


def _first_error(messages: list[str]) -> str:
    errors = [m for m in messages if m.startswith("[E::")] or messages
    return errors[0].split("] ", 1)[-1] if errors else "unreadable record"


def _read_vcf(path: Path) -> list[tuple]:
    """(line, chrom, pos, id, ref, alts) of every record, read with cyvcf2 (htslib)."""
    from cyvcf2 import VCF

    header = _header_lines(path)
    records = []
    with _htslib_messages() as messages:
        try:
            reader = VCF(str(path))
        except OSError:
            reader = None
        if reader is not None:
            try:
                for record in reader:
                    records.append((header + len(records) + 1, record.CHROM, int(record.POS), record.ID or "",
                                    record.REF, list(record.ALT)))
            except Exception:  # htslib reports a malformed line as a bare Exception
                reader.close()
                reader = False
            else:
                reader.close()
    if reader is None:
        raise InputError(f"{path}: not a readable VCF ({_first_error(messages)}); a VCF needs its ##fileformat and "
                         "#CHROM header lines, and a compressed one must be bgzip-compressed")
    if reader is False:
        raise InputError(f"{path} line {header + len(records) + 1}: malformed VCF record ({_first_error(messages)}); "
                         "fix or remove that line")
    for row, chrom, pos, _, _, _ in records:
        if pos < 1:
            raise InputError(f"{path} line {row}: position {pos} on {chrom} (VCF positions start at 1)")
    return records


def _read_tsv(path: Path) -> list[tuple]:
    """(line, chrom, pos, id, ref, alts) of a tab-separated table: chrom, pos (1-based), ref, alt and
    an optional id, with or without a header line naming them."""
    order = ["chrom", "pos", "ref", "alt", "id"]
    records = []
    with _open_text(path) as handle:
        for row, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or (line.startswith("#") and row > 1):
                continue
            fields = [f.strip() for f in line.split("\t")]
            names = [f.lower().lstrip("#") for f in fields]
            if row == 1 and {"chrom", "pos", "ref", "alt"} <= set(names):
                order = names
                continue
            if len(fields) < 4 or len(fields) > max(5, len(order)):
                raise InputError(f"{path} line {row}: expected chrom, pos, ref, alt and an optional id separated by "
                                 f"tabs, found {len(fields)} field(s); a VCF must start with '##fileformat=VCF'")
            value = dict(zip(order, fields, strict=False))
            try:
                pos = int(value["pos"])
            except ValueError:
                raise InputError(f"{path} line {row}: position {value['pos']!r} is not a whole number") from None
            if pos < 1:
                raise InputError(f"{path} line {row}: position {pos} (positions are 1-based, as in a VCF)")
            ident = value.get("id", "")
            records.append((row, value["chrom"], pos, "" if ident == "." else ident, value["ref"],
                            value["alt"].split(",")))
    return records


def match_genome(variants: pd.DataFrame, genome, source: Path | str, ref_mismatch: str = "error"
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Resolve chromosome names (the dataset's alias rules) and check that every variant lies inside
    its chromosome and that its REF equals the genome. Returns the variants with ``genome_chrom``
    and ``flipped`` columns, and the REF mismatches with what was done to each (``action``):
    ``error`` refuses them, ``skip`` drops them, ``flip`` keeps those whose ALT is the genome's
    (flipped; the others are refused)."""
    if ref_mismatch not in REF_MISMATCH:
        raise ValueError(f"ref_mismatch {ref_mismatch!r} (known: {', '.join(REF_MISMATCH)})")
    chroms = {c: genome.names.resolve(c) for c in dict.fromkeys(variants["chrom"])}
    missing = [c for c, name in chroms.items() if name is None]
    if missing:
        first = variants[variants["chrom"].isin(missing)].iloc[0]
        raise InputError(f"{source} line {first['row']}: "
                         + mismatch_message("the genome", missing, genome.sizes, genome.names.mode))
    out = variants.assign(genome_chrom=variants["chrom"].map(chroms))
    size = out["genome_chrom"].map(genome.sizes)
    past = out[out["pos"] + out["ref"].str.len() - 1 > size]
    if len(past):
        first = past.iloc[0]
        raise InputError(f"{source} line {first['row']}: {first['variant']} ends past the end of {first['chrom']} "
                         f"({genome.sizes[first['genome_chrom']]:,} bp){_more(past)}; is the VCF of this genome "
                         "assembly?")
    genome_ref = pd.Series([genome.fetch(c, p - 1, p - 1 + len(r)) for c, p, r in
                            zip(out["genome_chrom"], out["pos"], out["ref"], strict=True)], index=out.index)
    differs = (out["ref"] != genome_ref.str.upper()).to_numpy()
    flipped = np.zeros(len(out), dtype=bool)
    if ref_mismatch == "flip":
        for i in np.flatnonzero(differs):
            c, p, a = out["genome_chrom"].iat[i], out["pos"].iat[i], out["alt"].iat[i]
            flipped[i] = genome.fetch(c, p - 1, p - 1 + len(a)).upper() == a
    mismatches = out[differs].assign(genome_ref=genome_ref[differs],
                                     action=np.where(flipped[differs], "flipped", "dropped"))
    mismatches = mismatches[MISMATCH_COLUMNS].reset_index(drop=True)
    refused = mismatches[mismatches["action"] != "flipped"]
    if len(refused) and ref_mismatch != "skip":
        shown = ", ".join(f"line {m.row} {m.variant} (genome {m.genome_ref})" for m in refused.head(SHOWN).itertuples())
        what = "whose REF and ALT both differ" if ref_mismatch == "flip" else "whose REF differs"
        raise InputError(f"{source}: {len(refused)} variant(s) {what} from the genome: {shown}"
                         f"{' ...' if len(refused) > SHOWN else ''}; is the VCF of this genome assembly? "
                         "(--ref-mismatch skip drops them and lists them in ref_mismatches.tsv; --ref-mismatch flip "
                         "scores those whose ALT is the genome's allele, as baskerville does)")
    keep = ~differs | flipped
    return out.assign(flipped=flipped)[keep].reset_index(drop=True), mismatches


def _more(frame: pd.DataFrame) -> str:
    return f" (and {len(frame) - 1} more)" if len(frame) > 1 else ""
