"""The report as a reader sees it: rendered by headless Chromium at 1400 px, the page does not
overflow sideways, its script runs without error, every table-of-contents entry leads somewhere
that has content; the summary comes first and numbers are rounded."""

import json
import re
import shutil
import subprocess

import pandas as pd
import pytest

from enformer_transfer.report.elements import fmt, table

CHECK = """
<script>
window.addEventListener('load', function () {
  var doc = document.documentElement;
  var missing = [], empty = [];
  document.querySelectorAll('#toc a').forEach(function (a) {
    var target = document.getElementById(decodeURIComponent(a.getAttribute('href').slice(1)));
    if (!target) { missing.push(a.getAttribute('href')); return; }
    var content = target.cloneNode(true);
    content.querySelectorAll('h2, h3, h4').forEach(function (h) { h.remove(); });
    if (!content.textContent.trim() && !content.querySelector('img')) empty.push(a.getAttribute('href'));
  });
  var figuresWithoutImage = Array.prototype.filter.call(document.querySelectorAll('figure'),
    function (f) { return !f.querySelector('img') || !f.querySelector('figcaption'); }).length;
  var captionsBelow = Array.prototype.filter.call(document.querySelectorAll('figure'),
    function (f) { return f.firstElementChild.tagName != 'FIGCAPTION'; }).length;
  var tablesUnwrapped = Array.prototype.filter.call(document.querySelectorAll('table'),
    function (t) { return !t.parentElement.classList.contains('table-wrap'); }).length;
  // a link from the per-track table shows that track's plot
  var link = document.querySelector('td a[href*="-track-"]');
  var shown = null;
  if (link) { location.hash = link.getAttribute('href'); followHash(); shown = !document.getElementById(
    decodeURIComponent(link.getAttribute('href').slice(1))).hidden; }
  var out = document.createElement('pre');
  out.id = 'ux-check';
  out.textContent = JSON.stringify({width: window.innerWidth, scrollWidth: doc.scrollWidth,
    bodyScrollWidth: document.body.scrollWidth, missing: missing, empty: empty,
    figuresWithoutImage: figuresWithoutImage, captionsBelow: captionsBelow, tablesUnwrapped: tablesUnwrapped,
    tocEntries: document.querySelectorAll('#toc a').length, trackLinkShows: shown,
    errors: window.__errors});
  document.body.appendChild(out);
});
</script>
"""


def _chromium():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("chromium not installed (.ci/run installs Debian's chromium)")
    return chromium


def test_report_reads_well_at_1400_px(demo_run, tmp_path):
    chromium = _chromium()
    text = (demo_run / "report" / "report.html").read_text()
    page = tmp_path / "report.html"
    page.write_text(text.replace("</body>", CHECK + "</body>"))
    result = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--window-size=1400,1000", "--virtual-time-budget=20000", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180)
    dom = result.stdout
    found = re.search(r'<pre id="ux-check">(.*?)</pre>', dom, re.S)
    assert found, result.stderr[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert check["errors"] == []
    assert check["width"] == 1400 and check["scrollWidth"] <= 1400 and check["bodyScrollWidth"] <= 1400, check
    assert check["tocEntries"] >= 10 and check["missing"] == [] and check["empty"] == [], check
    assert check["figuresWithoutImage"] == 0 and check["captionsBelow"] == 0 and check["tablesUnwrapped"] == 0
    assert check["trackLinkShows"] is True


def test_summary_comes_first_and_names_baselines_and_tracks(demo_run):
    text = (demo_run / "report" / "report.html").read_text()
    toc, summary, dataset = text.index('id="toc"'), text.index('id="summary"'), text.index('id="dataset"')
    assert toc < summary < dataset
    head = text[summary:dataset]
    for piece in ("ridge", "backbone&#x27;s best own track", "default on run-random", "best ", "worst ", "Subclass",
                  "Mean Pearson per level"):
        assert piece in head, piece
    # every track has its plot in the report, reachable from the selector
    for ident in pd.read_csv(demo_run / "evaluation" / "default" / "per_track.csv")["identifier"].unique():
        assert f'<option value="default-track-{ident}">' in text and f'id="default-track-{ident}"' in text


def test_numbers_rounded_for_reading_full_precision_for_sorting():
    assert fmt(0.912345678) == "0.912" and fmt(12345.678) == "12,345.7" and fmt(3) == "3"
    assert fmt(0.0000123) == "1.23e-05" and fmt(float("nan")) == ""
    html = table(pd.DataFrame({"identifier": ["a"], "pearson": [0.912345678]}))
    assert ">0.912<" in html and 'data-value="0.912345678"' in html and 'class="table-wrap"' in html
    assert "none" in table(pd.DataFrame({"a": []}))
