"""fetch: BigWigs from URL lists and UCSC trackDbs, over a local HTTP server on loopback."""

import functools
import hashlib
import http.server
import shutil
import threading

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
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
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
    assert main(["fetch", "--urls", str(urls), "--out", str(out)]) == 0
    for name in names:
        assert _sha(out / "bigwigs" / name) == _sha(root / "bw" / name)
    assert not list((out / "bigwigs").glob("*.partial*"))
    table = read_targets_table(out / "targets.tsv")
    assert list(table["identifier"]) == [n[:-3] for n in names] and list(table["level"])[-1] == "Subclass"
    assert (table["clip"] == 32).all() and (table["scale"] == 2).all()
    stamp = (out / "bigwigs" / names[0]).stat().st_mtime_ns
    assert main(["fetch", "--urls", str(urls), "--out", str(out)]) == 0  # finished files are not fetched again
    assert (out / "bigwigs" / names[0]).stat().st_mtime_ns == stamp


def test_fetch_ucsc_trackdb(server, synthetic, tmp_path):
    root, base = server
    blocks = []
    for path, level in zip(synthetic.bigwigs[:3], ["Class", "Subclass", "cluster"], strict=True):
        blocks.append(f"track {path.stem}\ntype bigWig\nbigDataUrl bw/{path.name}\nshortLabel {path.stem}\n"
                      f"longLabel ATAC {path.stem} pseudobulk\nsubGroups level={level} sex=pooled\n")
    blocks.append("track folder\ncompositeTrack on\nshortLabel all\n")  # not a bigWig: ignored
    (root / "trackDb.txt").write_text("\n".join(blocks))
    assert main(["fetch", "--trackdb", f"{base}/trackDb.txt", "--out", str(tmp_path / "hub")]) == 0
    table = read_targets_table(tmp_path / "hub" / "targets.tsv")
    assert list(table["level"]) == ["Class", "Subclass", "cluster"] and set(table["sex"]) == {"pooled"}
    assert table["description"][0] == f"ATAC {synthetic.bigwigs[0].stem} pseudobulk"


def test_fetch_errors(server, tmp_path, capsys):
    root, base = server
    (root / "bw" / "fake.bw").write_text("not a bigwig")
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{base}/bw/fake.bw\n")
    assert main(["fetch", "--urls", str(urls), "--out", str(tmp_path / "o")]) == 2
    assert "not a BigWig" in capsys.readouterr().err
    assert not (tmp_path / "o" / "bigwigs" / "fake.bw").exists()
    urls.write_text(f"{base}/bw/missing.bw\n")
    assert main(["fetch", "--urls", str(urls), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "download failed" in err and "rerun the same command to resume" in err
    with pytest.raises(InputError, match="exactly one"):
        from enformer_transfer.data.fetch import fetch

        fetch(tmp_path, None, None)
