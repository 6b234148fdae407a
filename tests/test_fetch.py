"""fetch: BigWigs from URL lists and UCSC trackDbs, over a local HTTP server on loopback."""

import functools
import hashlib
import http.server
import json
import re
import shutil
import threading
import time

import pandas as pd
import pytest

from enformer_transfer import InputError, read_targets_table
from enformer_transfer.cli import main


@pytest.fixture
def server(synthetic, tmp_path):
    """Serves a folder holding the synthetic BigWigs (and a trackDb) on 127.0.0.1."""
    root = tmp_path / "www"
    shutil.copytree(synthetic.bigwigs[0].parent, root / "bw")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_url_list_with_metadata(server, synthetic, tmp_path):
    root, base = server
    names = [p.name for p in synthetic.bigwigs[:4]]
    urls = tmp_path / "urls.csv"
    pd.DataFrame({"url": [f"{base}/bw/{n}" for n in names], "identifier": [n[:-3] for n in names],
                  "level": ["Class", "Class", "Class", "Subclass"]}).to_csv(urls, index=False)
    out = tmp_path / "fetched"
    # an interrupted earlier download: a partial file is completed (this server ignores ranges)
    (out / "bigwigs").mkdir(parents=True)
    (out / "bigwigs" / f"{names[1][:-3]}.partial.bw").write_bytes((root / "bw" / names[1]).read_bytes()[:1000])
    assert main(["fetch", "--allow-private-network", "--urls", str(urls), "--out", str(out)]) == 0
    for name in names:
        assert _sha(out / "bigwigs" / name) == _sha(root / "bw" / name)
    assert not list((out / "bigwigs").glob("*.partial*"))
    table = read_targets_table(out / "targets.tsv")
    assert list(table["identifier"]) == [n[:-3] for n in names] and list(table["level"])[-1] == "Subclass"
    assert (table["clip"] == 32).all() and (table["scale"] == 2).all()
    stamp = (out / "bigwigs" / names[0]).stat().st_mtime_ns
    assert main(["fetch", "--allow-private-network", "--urls", str(urls), "--out", str(out)]) == 0  # finished files are not fetched again
    assert (out / "bigwigs" / names[0]).stat().st_mtime_ns == stamp


def test_fetch_ucsc_trackdb(server, synthetic, tmp_path):
    root, base = server
    blocks = []
    for path, level in zip(synthetic.bigwigs[:3], ["Class", "Subclass", "cluster"], strict=True):
        blocks.append(f"track {path.stem}\ntype bigWig\nbigDataUrl bw/{path.name}\nshortLabel {path.stem}\n"
                      f"longLabel ATAC {path.stem} pseudobulk\nsubGroups level={level} sex=pooled\n")
    blocks.append("track folder\ncompositeTrack on\nshortLabel all\n")  # not a bigWig: ignored
    (root / "trackDb.txt").write_text("\n".join(blocks))
    assert main(["fetch", "--allow-private-network", "--trackdb", f"{base}/trackDb.txt", "--out", str(tmp_path / "hub")]) == 0
    table = read_targets_table(tmp_path / "hub" / "targets.tsv")
    assert list(table["level"]) == ["Class", "Subclass", "cluster"] and set(table["sex"]) == {"pooled"}
    assert table["description"][0] == f"ATAC {synthetic.bigwigs[0].stem} pseudobulk"


def test_fetch_errors(server, tmp_path, capsys):
    root, base = server
    (root / "bw" / "fake.bw").write_text("not a bigwig")
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{base}/bw/fake.bw\n")
    assert main(["fetch", "--allow-private-network", "--urls", str(urls), "--out", str(tmp_path / "o")]) == 2
    assert "not a BigWig" in capsys.readouterr().err
    assert not (tmp_path / "o" / "bigwigs" / "fake.bw").exists()
    urls.write_text(f"{base}/bw/missing.bw\n")
    assert main(["fetch", "--allow-private-network", "--urls", str(urls), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "download failed" in err and "rerun the same command to resume" in err
    with pytest.raises(InputError, match="exactly one"):
        from enformer_transfer.data.fetch import fetch

        fetch(tmp_path, None, None)


# --- hostile hubs and lists: refused before any byte is read --------------------------------


@pytest.fixture(autouse=True)
def _short_timeouts(monkeypatch):
    """No fetch test can wait on a silent server for more than a few seconds."""
    from enformer_transfer.data import fetch

    monkeypatch.setattr(fetch, "TIMEOUT", 5.0, raising=False)  # raising: runs on old code too


def _hub(root, tracks):
    """Write ROOT/hub/trackDb.txt with one bigWig stanza per (name, bigDataUrl)."""
    (root / "hub").mkdir(exist_ok=True)
    text = "\n".join(f"track {name}\ntype bigWig\nbigDataUrl {url}\nshortLabel {name}\n" for name, url in tracks)
    (root / "hub" / "trackDb.txt").write_text(text)
    return root / "hub" / "trackDb.txt"


@pytest.mark.parametrize("where", ["file", "ftp", "climbing"])
def test_remote_hub_points_only_at_http(server, synthetic, tmp_path, capsys, where):
    root, base = server
    local = synthetic.bigwigs[1]
    bad = {"file": local.as_uri(), "ftp": "ftp://127.0.0.1/bw/x.bw", "climbing": "../" * 8 + str(local)[1:]}[where]
    _hub(root, [("good", f"../bw/{synthetic.bigwigs[0].name}"), ("evil", bad)])
    out = tmp_path / "out"
    assert main(["fetch", "--allow-private-network", "--trackdb", f"{base}/hub/trackDb.txt", "--out", str(out)]) == 2
    [err] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "track 'evil'" in err and bad in err and "refused" in err
    assert not out.exists()  # not even the good track was fetched


def test_local_trackdb_paths_stay_in_its_folder(synthetic, tmp_path, capsys):
    from enformer_transfer.data.fetch import fetch

    inside, outside = synthetic.bigwigs[:2]
    (tmp_path / "hub" / "bw").mkdir(parents=True)
    shutil.copy(inside, tmp_path / "hub" / "bw" / inside.name)
    shutil.copy(outside, tmp_path / outside.name)
    trackdb = _hub(tmp_path, [("in", f"bw/{inside.name}")])
    fetch(tmp_path / "a", trackdb=str(trackdb))
    assert _sha(tmp_path / "a" / "bigwigs" / "in.bw") == _sha(inside)  # copied in, checked like a download
    for escape in (f"../{outside.name}", str(tmp_path / outside.name), (tmp_path / outside.name).as_uri()):
        trackdb = _hub(tmp_path, [("in", f"bw/{inside.name}"), ("out", escape)])
        assert main(["fetch", "--allow-private-network", "--trackdb", str(trackdb), "--out", str(tmp_path / "b")]) == 2
        err = capsys.readouterr().err
        assert "track 'out'" in err and "--allow-local-paths" in err
        assert not (tmp_path / "b").exists()
    assert main(["fetch", "--allow-private-network", "--trackdb", str(trackdb), "--out", str(tmp_path / "b"), "--allow-local-paths"]) == 0
    assert _sha(tmp_path / "b" / "bigwigs" / "out.bw") == _sha(outside)
    urls = tmp_path / "hub" / "urls.txt"  # a URL list follows the same rule
    urls.write_text(f"bw/{inside.name}\n../{outside.name}\n")
    with pytest.raises(InputError, match="outside"):
        fetch(tmp_path / "c", urls=urls)
    urls.write_text(f"bw/{inside.name}\n")
    fetch(tmp_path / "c", urls=urls)


# --- servers that misbehave on purpose --------------------------------------------------------


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes) as ``server.mode`` says: 'ok' (ranges honoured),
    'short' (half the body under the full Content-Length), 'close' (half the body, no length,
    then the connection closes), 'range-from-zero' (a range request answered 206 with the whole
    file and its true Content-Range), 'range-lie' (206 claiming the range asked for, body from
    byte 0), 'silent' (never answers)."""

    timeout = 10  # no handler thread outlives a test for long

    def log_message(self, *args):
        pass

    def do_GET(self):
        body, mode = self.server.files.get(self.path), self.server.mode
        self.server.requests.append(self.headers.get("Range"))
        if body is None:
            return self.send_error(404)
        if mode == "silent":
            return time.sleep(1.5)
        n, asked = len(body), re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if asked and mode == "ok":
            return self._send(206, body[int(asked[1]) :], f"bytes {asked[1]}-{n - 1}/{n}")
        if asked and mode == "range-from-zero":
            return self._send(206, body, f"bytes 0-{n - 1}/{n}")
        if asked and mode == "range-lie":
            return self._send(206, body[: n - int(asked[1])], f"bytes {asked[1]}-{n - 1}/{n}")
        if mode == "short":
            return self._send(200, body[: n // 2], length=n)
        if mode == "close":
            return self._send(200, body[: n // 2], length=None)
        return self._send(200, body)

    def _send(self, status, body, content_range=None, length=-1):
        self.send_response(status)
        if content_range:
            self.send_header("Content-Range", content_range)
        if length is not None:
            self.send_header("Content-Length", str(len(body) if length == -1 else length))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def bad_server(synthetic, tmp_path):
    """(server, URL list of one synthetic BigWig, the BigWig): set ``server.mode`` to misbehave."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    bigwig = synthetic.bigwigs[0]
    httpd.files, httpd.mode, httpd.requests = {f"/bw/{bigwig.name}": bigwig.read_bytes()}, "ok", []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    urls = tmp_path / "urls.txt"
    urls.write_text(f"http://127.0.0.1:{httpd.server_address[1]}/bw/{bigwig.name}\n")
    yield httpd, urls, bigwig
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _fetch(urls, out):
    return main(["fetch", "--allow-private-network", "--urls", str(urls), "--out", str(out)])


def test_short_download_is_kept_and_resumed(bad_server, tmp_path, capsys):
    server, urls, bigwig = bad_server
    out, size = tmp_path / "out", bigwig.stat().st_size
    server.mode = "short"  # fewer bytes than Content-Length: used to become a complete, truncated BigWig
    assert _fetch(urls, out) == 2
    err = capsys.readouterr().err
    assert f"after {size // 2} of {size} bytes" in err and "rerun the same command to resume" in err
    assert not (out / "bigwigs" / bigwig.name).exists()
    assert (out / "bigwigs" / f"{bigwig.stem}.partial.bw").stat().st_size == size // 2
    server.mode = "ok"
    assert _fetch(urls, out) == 0
    assert server.requests[-1] == f"bytes={size // 2}-"  # resumed, not restarted
    assert _sha(out / "bigwigs" / bigwig.name) == _sha(bigwig)


def test_early_close_without_length_is_not_accepted(bad_server, tmp_path, capsys):
    server, urls, bigwig = bad_server
    server.mode = "close"
    assert _fetch(urls, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "truncated" in err and "rerun the same command to download it again" in err
    assert not list((tmp_path / "out" / "bigwigs").iterdir())


@pytest.mark.parametrize("mode", ["range-from-zero", "range-lie"])
def test_range_answer_from_another_byte_is_not_appended(bad_server, tmp_path, capsys, mode):
    server, urls, bigwig = bad_server
    out = tmp_path / "out"
    (out / "bigwigs").mkdir(parents=True)
    (out / "bigwigs" / f"{bigwig.stem}.partial.bw").write_bytes(bigwig.read_bytes()[:1000])
    server.mode = mode
    if mode == "range-from-zero":  # Content-Range says byte 0: start over
        assert _fetch(urls, out) == 0
        assert server.requests == ["bytes=1000-", None]
    else:  # Content-Range lies: only the full check of the file can tell
        assert _fetch(urls, out) == 2
        assert "download it again" in capsys.readouterr().err
        assert not list((out / "bigwigs").iterdir())
        server.mode = "ok"
        assert _fetch(urls, out) == 0
    assert _sha(out / "bigwigs" / bigwig.name) == _sha(bigwig)


def test_silent_server_times_out(bad_server, tmp_path, capsys, monkeypatch):
    from enformer_transfer.data import fetch

    server, urls, _ = bad_server
    server.mode = "silent"
    monkeypatch.setattr(fetch, "TIMEOUT", 0.3, raising=False)
    started = time.monotonic()
    assert _fetch(urls, tmp_path / "out") == 2
    assert time.monotonic() - started < 1.2
    assert "timed out" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_rerun_repairs_damaged_files(bad_server, tmp_path, caplog, damage):
    server, urls, bigwig = bad_server
    out = tmp_path / "out"
    assert _fetch(urls, out) == 0
    final = out / "bigwigs" / bigwig.name
    data = final.read_bytes()
    final.write_bytes(data[:-500] if damage == "truncate" else data[:200] + bytes([data[200] ^ 1]) + data[201:])
    assert _fetch(urls, out) == 0  # used to skip any existing file
    assert _sha(final) == _sha(bigwig) and len(server.requests) == 2
    assert "fetching it again" in caplog.text
    record = json.loads((out / "fetch.json").read_text())["files"][f"bigwigs/{bigwig.name}"]
    assert record == {"url": urls.read_text().strip(), "file": f"bigwigs/{bigwig.name}",
                      "size": bigwig.stat().st_size, "sha256": _sha(bigwig)}
    assert _fetch(urls, out) == 0 and len(server.requests) == 2  # verified, not fetched again
