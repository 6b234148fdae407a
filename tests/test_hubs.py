"""Hostile hubs (issue 19): private addresses, damaged BigWig headers, long track names, and
trackDbs written the way UCSC reads them. Everything runs offline, on 127.0.0.1."""

import functools
import hashlib
import http.server
import shutil
import struct
import threading

import pandas as pd
import pytest

from enformer_transfer import IntegrityError, read_targets_table
from enformer_transfer.cli import main


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- 1. no connection to this machine or its private network ------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "169.254.169.254", "10.0.0.1", "172.16.5.4",
                                     "192.168.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "::",
                                     "fe80::1", "fe80::1%1", "fc00::1", "ff02::1", "::ffff:127.0.0.1",
                                     "2002:7f00:1::", "64:ff9b::a9fe:a9fe"])
def test_non_public_addresses_are_named(address):
    from enformer_transfer.data._network import address_kind

    assert address_kind(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "140.82.112.3", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    from enformer_transfer.data._network import address_kind

    assert address_kind(address) is None


def test_names_are_checked_after_resolution():
    from enformer_transfer.data._network import AddressRefused, resolve_public

    with pytest.raises(AddressRefused) as caught:
        resolve_public("http://localhost:8080/hub/trackDb.txt")
    message = str(caught.value)
    assert "http://localhost:8080/hub/trackDb.txt" in message and "resolves to" in message
    assert "loopback" in message and "--allow-private-network" in message and "\n" not in message
    for url in ("http://169.254.169.254/latest/meta-data/", "https://[::1]/x.bw", "http://10.0.0.1/x.bw"):
        with pytest.raises(AddressRefused, match="--allow-private-network"):
            resolve_public(url)
    assert resolve_public("http://localhost:8080/x", allow_private_network=True)


class _Redirecting(http.server.BaseHTTPRequestHandler):
    """/hub/trackDb.txt: ``server.trackdb``; /bw/...: ``server.bigwig``; /go: a redirect to ``server.target``."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path == "/go":
            self.send_response(302)
            self.send_header("Location", self.server.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.server.trackdb.encode() if self.path == "/hub/trackDb.txt" else self.server.bigwig
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def redirecting(synthetic, monkeypatch):
    """A server on 127.0.0.1, which counts as public here (so that the next hop is what is checked)."""
    from enformer_transfer.data import _network

    judged = _network.address_kind
    monkeypatch.setattr(_network, "address_kind", lambda a: None if a == "127.0.0.1" else judged(a))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    httpd.requests, httpd.trackdb, httpd.bigwig, httpd.target = [], "", synthetic.bigwigs[0].read_bytes(), ""
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_default_refuses_loopback_first_url(synthetic, tmp_path, capsys):
    """The tests' own servers need --allow-private-network; without it the first URL is refused."""
    root = tmp_path / "www"
    (root / "hub").mkdir(parents=True)
    (root / "hub" / "trackDb.txt").write_text("track a\ntype bigWig\nbigDataUrl a.bw\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hub/trackDb.txt"
        assert main(["fetch", "--trackdb", url, "--out", str(tmp_path / "out")]) == 2
        line = _error_line(capsys)
        assert url in line and "127.0.0.1" in line and "loopback" in line and "--allow-private-network" in line
        urls = tmp_path / "urls.txt"
        urls.write_text(f"http://127.0.0.1:{httpd.server_address[1]}/x.bw\n")
        assert main(["fetch", "--urls", str(urls), "--out", str(tmp_path / "out")]) == 2
        assert "--allow-private-network" in _error_line(capsys)
        assert not (tmp_path / "out").exists()
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("target", ["http://169.254.169.254/latest/meta-data/iam", "http://10.0.0.1/x.bw",
                                    "http://[::1]:9/x.bw", "http://127.0.0.2:9/x.bw"])
def test_redirect_to_private_address_is_refused(redirecting, tmp_path, capsys, target):
    server, base = redirecting
    server.target = target
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{base}/go\n")
    assert main(["fetch", "--urls", str(urls), "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys)
    assert target in line and f"a redirect from {base}/go" in line and "--allow-private-network" in line
    assert server.requests == ["/go"]
    assert not list((tmp_path / "out" / "bigwigs").iterdir())


def test_hub_pointing_at_private_address_is_refused_before_any_download(redirecting, synthetic, tmp_path, capsys):
    server, base = redirecting
    server.trackdb = ("track good\ntype bigWig\nbigDataUrl ../bw/good.bw\n\n"
                      "track metadata\ntype bigWig\nbigDataUrl http://169.254.169.254/latest/meta-data/\n")
    assert main(["fetch", "--trackdb", f"{base}/hub/trackDb.txt", "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys)
    assert "track 'metadata'" in line and "169.254.169.254" in line and "link-local" in line
    assert server.requests == ["/hub/trackDb.txt"] and not (tmp_path / "out").exists()
    server.trackdb = server.trackdb.split("\n\n")[0]  # a public redirect chain still works
    assert main(["fetch", "--trackdb", f"{base}/hub/trackDb.txt", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "bigwigs" / "good.bw").read_bytes() == synthetic.bigwigs[0].read_bytes()


# --- 2. BigWig headers that would make a reader allocate without bound ---------------------------


def _set(data: bytes, fmt: str, offset: int, value) -> bytes:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def _chrom_tree(data: bytes) -> int:
    return struct.unpack_from("<Q", data, 8)[0]


HEADER_DAMAGE = {  # little-endian header: zoomLevels @6, chromTreeOffset @8, fullIndexOffset @24, uncompressBufSize @52
    "2^31 chromosomes": (lambda d: _set(d, "Q", _chrom_tree(d) + 16, 2**31), "claims 2147483648 chromosomes"),
    "1000 zoom levels": (lambda d: _set(d, "H", 6, 1000), "1000 zoom levels"),
    "index past EOF": (lambda d: _set(d, "Q", 24, len(d) + 4096), "beyond the end of the file"),
    "truncated": (lambda d: d[: len(d) // 3], "beyond the end of the file"),
    "4 GB buffer": (lambda d: _set(d, "I", 52, 2**32 - 1), "4294967295 bytes uncompressed"),
    "key size": (lambda d: _set(d, "I", _chrom_tree(d) + 8, 2**31), "chromosome tree header is damaged"),
}


@pytest.fixture
def small_bigwig(tmp_path):
    """A BigWig written here with pybigtools."""
    import pybigtools

    path = tmp_path / "small.bw"
    writer = pybigtools.open(str(path), "w")
    writer.write({"chr1": 20_000, "chr2": 5_000},
                 [("chr1", i * 10, i * 10 + 10, float(i % 7)) for i in range(1500)] + [("chr2", 0, 100, 1.0)])
    return path


@pytest.mark.parametrize("damage", list(HEADER_DAMAGE))
def test_damaged_header_is_one_line_in_every_reader(small_bigwig, damage, tmp_path):
    from enformer_transfer.data.bigwig import bigwig_chrom_sizes, check_header, validate_bigwig

    make, message = HEADER_DAMAGE[damage]
    check_header(small_bigwig)
    assert bigwig_chrom_sizes(small_bigwig) == {"chr1": 20_000, "chr2": 5_000}
    bad = tmp_path / "bad.bw"
    bad.write_bytes(make(small_bigwig.read_bytes()))
    for read in (validate_bigwig, bigwig_chrom_sizes):  # fetch's validation; the dataset's first read
        with pytest.raises(IntegrityError, match=message) as caught:
            read(bad, "track 'x'")
        assert str(bad) in str(caught.value) and "track 'x'" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("damage", ["2^31 chromosomes", "1000 zoom levels", "truncated"])
def test_damaged_header_in_fetch_and_dataset(synthetic, damage, tmp_path, capsys):
    make, message = HEADER_DAMAGE[damage]
    (tmp_path / "list").mkdir()
    bad = tmp_path / "list" / "bad.bw"
    bad.write_bytes(make(synthetic.bigwigs[0].read_bytes()))
    (tmp_path / "list" / "urls.txt").write_text("bad.bw\n")
    assert main(["fetch", "--urls", str(tmp_path / "list" / "urls.txt"), "--out", str(tmp_path / "out")]) == 2
    line = _error_line(capsys)
    assert "bad.bw" in line and re_search(message, line)
    table = pd.read_csv(synthetic.targets, sep="\t", dtype=str, keep_default_na=False)
    table.loc[0, "file"] = str(bad)
    table.to_csv(tmp_path / "targets.tsv", sep="\t", index=False)
    assert main(["dataset", "--out", str(tmp_path / "run"), "--quiet", "--workers", "1", "--seq-length", "16384",
                 "--n-bins", "64", "--genome", str(synthetic.genome), "--targets", str(tmp_path / "targets.tsv"),
                 "--windows", str(synthetic.windows)]) == 2
    line = _error_line(capsys)
    assert str(bad) in line and re_search(message, line)


def re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text) is not None


# --- 3. long and odd track names ---------------------------------------------------------------


def test_long_track_names_become_short_unique_file_names(synthetic, tmp_path):
    from enformer_transfer.data.fetch import bigwig_filename, fetch

    long_a, long_b = "cortex_" + "a" * 293, "cortex_" + "a" * 292 + "b"  # 300 characters, same first 100
    hub = tmp_path / "hub"
    hub.mkdir()
    stanzas = []
    for i, name in enumerate([long_a, long_b, "..", "é" * 80]):
        shutil.copy(synthetic.bigwigs[i], hub / f"{i}.bw")
        stanzas.append(f"track {name}\ntype bigWig\nbigDataUrl {i}.bw\n")
    (hub / "trackDb.txt").write_text("\n".join(stanzas))
    fetch(tmp_path / "out", trackdb=str(hub / "trackDb.txt"))
    names = sorted(p.name for p in (tmp_path / "out" / "bigwigs").iterdir())
    expected_a = long_a[:100] + "-" + hashlib.sha256(long_a.encode()).hexdigest()[:8] + ".bw"
    assert expected_a in names and bigwig_filename(long_a) == expected_a
    assert bigwig_filename(long_b) in names and bigwig_filename(long_b) != expected_a
    assert "__.bw" in names and len(names) == 4
    assert all(len(n.encode()) <= 100 + 12 for n in names)
    table = read_targets_table(tmp_path / "out" / "targets.tsv")
    assert expected_a[:-3] in set(table["identifier"])


# --- 4. trackDbs as UCSC reads them ------------------------------------------------------------

COMPOSITE = """\
track brain
compositeTrack on
shortLabel Brain ATAC
longLabel Brain ATAC pseudobulk
type bigWig 0 100
subGroup1 view Views Signal=Signal Peaks=Peaks
subGroup2 level Level Class=Class Subclass=Subclass
metadata assay=ATAC "lab=Some Lab"

\ttrack brainSignal
\tparent brain
\tview Signal
\tshortLabel Signal

\t\ttrack {a}
\t\tparent brainSignal on
\t\tbigDataUrl bw/{a}.bw
\t\tshortLabel {a}
\t\tlongLabel ATAC {a} \\
\t\t  pseudobulk
\t\tsubGroups view=Signal level=Class

        track {b}
        parent brainSignal off
        bigDataUrl bw/{b}.bw
        shortLabel {b}
        subGroups view=Signal level=Subclass
        metadata lab=Other

\ttrack brainPeaks
\tparent brain
\tview Peaks
\ttype bigBed 6

\t\ttrack peaks1
\t\tparent brainPeaks
\t\tbigDataUrl bw/peaks1.bb

track lonely
parent nowhere
bigDataUrl bw/{a}.bw

track folder
superTrack on
type bigWig

track inFolder
parent folder
bigDataUrl bw/{a}.bw

track\tplain
type\tbigWig
bigDataUrl\tbw/{c}.bw
"""


def test_trackdb_inheritance_indentation_and_skips(synthetic, tmp_path, caplog):
    from enformer_transfer.data.fetch import fetch

    a, b, c = (p.stem for p in synthetic.bigwigs[:3])
    (tmp_path / "hub" / "bw").mkdir(parents=True)
    for path in synthetic.bigwigs[:3]:
        shutil.copy(path, tmp_path / "hub" / "bw" / path.name)
    (tmp_path / "hub" / "trackDb.txt").write_text(COMPOSITE.format(a=a, b=b, c=c))
    fetch(tmp_path / "out", trackdb=str(tmp_path / "hub" / "trackDb.txt"))
    table = read_targets_table(tmp_path / "out" / "targets.tsv").set_index("identifier")
    assert list(table.index) == [a, b, "plain"]
    assert table.loc[a, "level"] == "Class" and table.loc[b, "level"] == "Subclass"
    assert table.loc[a, "view"] == "Signal" and table.loc[a, "assay"] == "ATAC"  # metadata from the composite
    assert table.loc[a, "lab"] == "Some Lab" and table.loc[b, "lab"] == "Other"  # the nearer track wins
    assert table.loc[a, "description"] == f"ATAC {a} pseudobulk"  # continuation line
    skipped = pd.read_csv(tmp_path / "out" / "skipped_tracks.tsv", sep="\t")
    reasons = dict(zip(skipped["track"], skipped["reason"], strict=True))
    assert set(reasons) == {"peaks1", "lonely", "inFolder"}
    assert "bigBed" in reasons["peaks1"] and "nowhere" in reasons["lonely"] and "no type" in reasons["inFolder"]
    assert "3 stanza(s) skipped" in caplog.text and "'peaks1'" in caplog.text


def test_trackdb_include_is_refused(tmp_path):
    from enformer_transfer import InputError
    from enformer_transfer.data.trackdb import parse_trackdb

    with pytest.raises(InputError, match=r"line 4: 'include other.txt' is not supported"):
        parse_trackdb("track a\ntype bigWig\n\ninclude other.txt\n", "hub/trackDb.txt")
    hub = parse_trackdb("track a\nbigDataUrl a.bw\n\ntrack b\ntype bigWig\nbigDataUrl b.bw\n", "t")
    assert [t["identifier"] for t in hub.tracks] == ["b"] and hub.skipped == [("a", "no type (neither its own nor a "
                                                                                  "parent's)")]
