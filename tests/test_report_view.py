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
  // every element inside its box, except inside a box that scrolls (tables, code)
  function scrolls(el) { var o = getComputedStyle(el).overflowX; return o == 'auto' || o == 'scroll'; }
  var overflowing = [];
  (function walk(el, exempt) {
    Array.prototype.forEach.call(el.children, function (child) {
      if (child.id == 'ux-check' || child.tagName == 'SCRIPT' || child.tagName == 'STYLE') return;
      var box = child.getBoundingClientRect();
      if (!exempt && box.width > 0) {
        var parent = el.getBoundingClientRect();
        if (box.right > parent.right + 1 || box.left < parent.left - 1 ||
            (!scrolls(child) && child.scrollWidth > child.clientWidth + 1 && getComputedStyle(child).display != 'inline'))
          overflowing.push(child.tagName + (child.id ? '#' + child.id : '') + '.' + child.className + ' ' +
                           Math.round(box.width) + ' in ' + Math.round(parent.width) + ' (' + (child.closest('section') || {}).id + ')');
      }
      walk(child, exempt || scrolls(child));
    });
  })(document.body, false);
  // a section says something: not a bare 'none' (or '-', or nothing) beside its heading and subsections
  var bare = [];
  document.querySelectorAll('section').forEach(function (section) {
    var own = section.cloneNode(true);
    own.querySelectorAll('h2, h3, h4, section').forEach(function (h) { h.remove(); });
    var text = own.textContent.trim().toLowerCase();
    if (['none', '-', 'n/a', ''].indexOf(text) >= 0 && !own.querySelector('img, table')) bare.push(section.id);
  });
  document.querySelectorAll('p').forEach(function (p) {
    if (p.textContent.trim().toLowerCase() == 'none') bare.push('p in ' + (p.closest('section') || {}).id);
  });
  // bold: every cell that shows the row's bold value is bold, in the columns that compare
  var ties = [];
  document.querySelectorAll('table').forEach(function (t) {
    var compared = {};
    Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {
      Array.prototype.forEach.call(r.cells, function (c, i) { if (c.querySelector('b')) compared[i] = true; });
    });
    Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {
      var bold = Array.prototype.filter.call(r.cells, function (c) { return c.querySelector('b'); })
        .map(function (c) { return c.textContent.trim(); });
      if (!bold.length) return;
      if (new Set(bold).size > 1) ties.push('different values bold: ' + bold.join(', '));
      Array.prototype.forEach.call(r.cells, function (c, i) {
        if (compared[i] && !c.querySelector('b') && c.textContent.trim() == bold[0]) ties.push('tie not bold: ' + bold[0]);
      });
    });
  });
  var out = document.createElement('pre');
  out.id = 'ux-check';
  out.textContent = JSON.stringify({width: window.innerWidth, scrollWidth: doc.scrollWidth,
    bodyScrollWidth: document.body.scrollWidth, missing: missing, empty: empty,
    figuresWithoutImage: figuresWithoutImage, captionsBelow: captionsBelow, tablesUnwrapped: tablesUnwrapped,
    tocEntries: document.querySelectorAll('#toc a').length, trackLinkShows: shown,
    overflowing: overflowing, bare: bare, ties: ties,
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


def _render(chromium: str, text: str, tmp_path) -> dict:
    """The page rendered by headless Chromium at 1400 px, with CHECK's findings."""
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
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
                      .replace("&amp;", "&"))


def test_report_reads_well_at_1400_px(demo_run, tmp_path):
    chromium = _chromium()
    check = _render(chromium, (demo_run / "report" / "report.html").read_text(), tmp_path)
    assert check["errors"] == []
    assert check["width"] == 1400 and check["scrollWidth"] <= 1400 and check["bodyScrollWidth"] <= 1400, check
    assert check["tocEntries"] >= 10 and check["missing"] == [] and check["empty"] == [], check
    assert check["figuresWithoutImage"] == 0 and check["captionsBelow"] == 0 and check["tablesUnwrapped"] == 0
    assert check["trackLinkShows"] is True
    # nothing wider than its box outside a scrolling table, no bare 'none', ties bolded alike
    assert check["overflowing"] == [], check["overflowing"]
    assert check["bare"] == [], check["bare"]
    assert check["ties"] == [], check["ties"]


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
    html = table(pd.DataFrame({"identifier": ["a"], "pearson": [0.912345678]}), empty="no track")
    assert ">0.912<" in html and 'data-value="0.912345678"' in html and 'class="table-wrap"' in html


def test_ties_bold_alike_and_columns_in_words():
    frame = pd.DataFrame({"group": ["a", "b"], "tracks": [40, 3], "default": [0.91234, 0.5],
                          "ridge_pearson": [0.91229, 0.7]})
    html = table(frame, empty="nothing", bold_max=["default", "ridge_pearson"])
    first, second = html.split("<tr>")[2:4]
    assert first.count("<b>") == 2 and "<b>0.912</b>" in first  # equal as shown: both bold
    assert second.count("<b>") == 1 and "<b>0.700</b>" in second and "<b>40" not in html
    assert ">ridge baseline Pearson</th>" in html and 'title="ridge_pearson"' in html
    assert ">nothing<" in table(frame.iloc[:0], empty="nothing")


def test_track_labels_use_the_description():
    from enformer_transfer.plots.labels import column_label, shorten, track_labels

    encode = pd.DataFrame({"identifier": ["ENCFF154NSS", "ENCFF136DBS", "ENCFF1", "ENCFF2"],
                           "description": ["DNASE:HepG2", "DNASE:cardiac fibroblast female", "DNASE:K562", "DNASE:K562"]})
    assert track_labels(encode) == ["HepG2", "cardiac fibroblast female", "K562 (ENCFF1)", "K562 (ENCFF2)"]
    mixed = pd.DataFrame({"identifier": ["a", "b"], "description": ["DNASE:HepG2", ""]})
    assert track_labels(mixed) == ["DNASE:HepG2", "b"]  # prefixes differ: kept; no description: the identifier
    assert track_labels(pd.DataFrame({"identifier": ["x"]})) == ["x"]
    assert column_label("compare_run_pearson_mean") == "compare run Pearson, mean"
    assert column_label("pearson_log1p_mean") == "Pearson of log(1 + x), mean"
    assert column_label("some_new_column") == "some new column"
    assert shorten("A" * 45, 18) == "A" * 17 + "\u2026" and shorten("SOX10") == "SOX10"


def _text_problems(fig) -> list[str]:
    """Visible text of a drawn figure (tick labels, annotations, titles, legends) that overlaps
    other text or lies outside the figure, measured with the figure's renderer."""
    from matplotlib.text import Text

    drawn = []  # the text matplotlib actually draws (not ticks outside the view, not unplaced annotations)
    draw_text = Text.draw

    def record(self, renderer):
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)
        return draw_text(self, renderer)

    Text.draw = record
    try:
        fig.canvas.draw()
    finally:
        Text.draw = draw_text
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    texts = list(dict.fromkeys(drawn))
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    problems = [f"outside the figure: {name!r}" for name, box in boxes
                if box.x0 < frame.x0 - 1 or box.y0 < frame.y0 - 1 or box.x1 > frame.x1 + 1 or box.y1 > frame.y1 + 1]
    for i, (name, box) in enumerate(boxes):
        for other, second in boxes[i + 1 :]:
            shrunk = box.padded(-0.5)
            if shrunk.overlaps(second.padded(-0.5)):
                problems.append(f"overlap: {name!r} and {other!r}")
    return problems


@pytest.fixture
def measured(monkeypatch):
    """Every figure drawn while the test runs, measured (``_text_problems``) before it is saved."""
    from enformer_transfer.plots import figures as draw

    found: dict[str, list[str]] = {}
    save = draw._save

    def measure_then_save(fig, path):
        found[__import__("pathlib").Path(path).stem] = _text_problems(fig)
        return save(fig, path)

    monkeypatch.setattr(draw, "_save", measure_then_save)
    return found


ENCODE = ["HepG2", "cardiac fibroblast female", "GM03348", "GM12865", "K562", "astrocyte of the cerebellum",
          "fibroblast of lung", "keratinocyte female", "IMR-90", "H1"]


@pytest.mark.slow
def test_figures_have_no_overlapping_or_clipped_labels(measured, tmp_path):
    import numpy as np

    from enformer_transfer.plots import figures as draw

    rng = np.random.default_rng(0)
    n = len(ENCODE)
    # real-data-like: ten tracks, Pearson close together, means spread
    draw.pearson_vs_property(rng.gamma(2, 1, n), 0.03 + 0.01 * rng.random(n), ENCODE, "mean target value",
                             tmp_path / "vs_mean")
    draw.pearson_vs_property(rng.integers(200, 5000, 12).astype(float), 0.9 + 0.02 * rng.random(12),
                             [f"{i:02d}_cell_type_{i}" for i in range(12)], "number of nuclei", tmp_path / "vs_nuclei")
    cell_types = ["Exc", "Pvalb", "Sst", "Vip", "Lamp5", "Oligo"]
    confusion = rng.integers(0, 20, (6, 6))
    confusion[2] = 0  # no region most open in Sst
    labels = np.repeat(np.arange(6), 60)
    draw.dar_figures(rng.uniform(-1, 1, 360), confusion, cell_types, rng.random((6, 360)), rng.random((6, 360)),
                     labels, tmp_path / "dar")
    draw.variant_effect_bars(rng.normal(size=12), rng.normal(size=12), [f"track {i}" for i in range(12)],
                             ["Class"] * 3 + ["Subclass"] * 6 + ["cluster"] * 3, "SAD", "chr4:73479:C:T",
                             tmp_path / "effects")
    consensus = ["ACGTACGTACGTACGTTTGACGCAAGGCTTACGATCGATCGGCTA", "SOX10", "TTGACGCAAGGCTTACGATCGATCG"]
    draw.motif_importance_heatmap(rng.random((6, 3)), cell_types, consensus, tmp_path / "motifs")
    logs = pd.DataFrame({"epoch": range(75), "train_loss": 0.16 - 1e-5 * np.arange(75),
                         "val_loss": 0.21 + 1e-5 * rng.random(75), "val_pearson": 0.9497 + 4e-4 * np.sqrt(np.arange(75)),
                         "step": range(75), "lr": 1e-3})
    draw.training_curves(logs, tmp_path / "curves", start=0.9497, kept_epoch=57, start_label="ridge start")
    draw.summary_bars(pd.DataFrame({"default": [0.91, 0.9, 0.92], "ridge baseline": [0.9, 0.89, 0.91]},
                                   index=pd.MultiIndex.from_tuples([("all", "all tracks"), ("level", "Class"),
                                                                    ("level", "Subclass")])), "Mean Pearson",
                      tmp_path / "bars")
    per_track = pd.DataFrame({"split": ["test"] * n + ["valid"] * n, "pearson": rng.random(2 * n),
                              "biosample_type": (["cell line"] * 5 + ["primary cell"] * 3 + ["tissue"] * 2) * 2})
    draw.pearson_boxplot(per_track, "biosample_type", tmp_path / "boxplot")
    coords = np.arange(512) * 128.0 + 1e6
    draw.track_plot(coords, rng.random((512, n)), rng.random((512, n)), ENCODE, "chr1:1,000,000-1,065,536",
                    tmp_path / "tracks")
    corr = np.corrcoef(rng.random((n, 50)))
    draw.correlation_heatmaps(corr, corr, ENCODE, tmp_path / "correlations")
    draw.scatter_observed_predicted(rng.random(500), rng.random(500), ENCODE[1], 0.03, tmp_path / "scatter")
    draw.called_dars_figure(rng.integers(5, 50, 6), cell_types, rng.random((6, 120)), np.repeat(np.arange(6), 20),
                            tmp_path / "called")
    draw.variant_tracks(coords, rng.random((512, 4)), rng.random((512, 4)), ENCODE[:4], 1_030_000, "chr1:1030000:A:G",
                        tmp_path / "variant_tracks")
    assert set(measured) >= {"vs_mean", "vs_nuclei", "dar_confusion", "dar_heatmaps", "effects", "motifs", "curves",
                             "bars", "boxplot", "tracks", "correlations", "scatter", "called", "variant_tracks"}
    assert {name: problems for name, problems in measured.items() if problems} == {}


def test_figure_details_a_reader_needs(measured, tmp_path):
    """The DAR heatmap has a colour bar and legible text, the variants legend covers no bar, motif
    names are shortened, the training curves are zoomed to the data and mark the start and the kept epoch."""
    import matplotlib
    import numpy as np

    from enformer_transfer.plots import figures as draw

    kept = {}

    def keep(fig, path):  # kept open to be measured, not saved
        kept[__import__("pathlib").Path(path).stem] = fig
        fig.canvas.draw()
        return []

    draw._save, original = keep, draw._save
    try:
        rng = np.random.default_rng(1)
        draw.dar_figures(rng.uniform(-1, 1, 50), rng.integers(0, 5, (4, 4)), ["Exc", "Pvalb", "Sst", "Vip"],
                         rng.random((4, 50)), rng.random((4, 50)), np.repeat(np.arange(4), [10, 15, 5, 20]), tmp_path)
        draw.variant_effect_bars(np.full(8, 3.0), np.full(8, 2.0), [f"t{i}" for i in range(8)], ["A"] * 4 + ["B"] * 4,
                                 "SAD", "v", tmp_path / "effects")
        draw.motif_importance_heatmap(rng.random((2, 2)), ["Exc", "Sst"], ["A" * 45, "SOX10"], tmp_path / "motifs")
        logs = pd.DataFrame({"epoch": range(75), "val_pearson": 0.9497 + 1e-5 * np.arange(75),
                             "train_loss": 0.16 - 1e-6 * np.arange(75)})
        draw.training_curves(logs, tmp_path / "curves", start=0.9497, kept_epoch=57)
    finally:
        draw._save = original
    heat = kept["dar_heatmaps"]
    assert len(heat.axes) == 3  # two panels and their colour bar
    sizes = [t.get_fontsize() for ax in heat.axes[:2] for t in ax.get_yticklabels()]
    assert min(sizes) >= 8 and heat.get_size_inches()[1] * 110 >= 4 * 8 * 2  # a row per cell type, 8-pt labels
    confusion = kept["dar_confusion"]
    assert any(t.get_text() == "5" or t.get_text().isdigit() for t in confusion.axes[0].texts)
    effects = kept["effects"]
    renderer = effects.canvas.get_renderer()
    legend = effects.axes[0].get_legend().get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for ax in effects.axes for p in ax.patches
            if isinstance(p, matplotlib.patches.Rectangle)]
    assert bars and not any(legend.overlaps(b) for b in bars)
    motifs = kept["motifs"]
    names = [t.get_text() for t in motifs.axes[0].get_xticklabels()]
    assert names == ["A" * (draw.MOTIF_LABEL_WIDTH - 1) + "\u2026", "SOX10"]
    curves = kept["curves"]
    pearson = next(ax for ax in curves.axes if "Pearson" in ax.get_title())
    low, high = pearson.get_ylim()
    assert high - low < 0.01  # zoomed to the data (0.9497 to 0.9504), not 0 to 1
    assert any(line.get_linestyle() == "--" for line in pearson.get_lines())  # the start
    assert any(line.get_marker() == "*" for line in pearson.get_lines())  # the kept epoch
    import matplotlib.pyplot as plt

    for fig in kept.values():
        plt.close(fig)


def test_the_check_sees_overflow_and_bare_sections(tmp_path):
    """CHECK itself: an element wider than its box and a bare 'none' section are reported, a
    wide table in its scrolling box is not."""
    from enformer_transfer.report.elements import SCRIPT, STYLE, Section

    wide = pd.DataFrame({f"column_{i}": [0.5] for i in range(60)})
    sections = [Section("tables", "Tables", table(wide, empty="-")),
                Section("wide", "Wide", "<div style='width: 2000px'>too wide</div>"),
                Section("bare", "Bare", "<p class='small'>none</p>")]
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>" + STYLE + "</head><body><nav id='toc'></nav>"
            + "".join(s.render() for s in sections) + SCRIPT + "</body></html>")
    check = _render(_chromium(), page, tmp_path)
    assert any("(wide)" in entry for entry in check["overflowing"]), check["overflowing"]
    assert not any("(tables)" in entry for entry in check["overflowing"]), check["overflowing"]
    assert "bare" in check["bare"]


def test_finetuned_model_that_kept_its_frozen_head_is_not_a_second_copy(demo_run, monkeypatch):
    """A fine-tuned model that kept the frozen head's weights is one paragraph, 'identical to default',
    with its training curves; not a second set of figures and tables."""
    from enformer_transfer import Run
    from enformer_transfer.report.html import render_report

    load = Run.head

    def kept_frozen(self, name):  # whatever the demo's fine-tuning reached, as if it kept the frozen head
        head = load(self, name)
        if name == "finetuned":
            head.metadata["finetune"]["kept"] = "frozen"
        return head

    monkeypatch.setattr(Run, "head", kept_frozen)
    text = render_report(Run(demo_run), ["default", "finetuned", "ridge"])
    start, end = text.index('id="head-finetuned"'), text.index('id="head-ridge"')
    section = text[start:end]
    assert "Identical to default" in section and "Training curves" in section
    assert 'id="head-finetuned-tracks"' not in text and 'id="head-finetuned-figures"' not in text
    assert section.count("<img") == 1
    summary = text[text.index('id="summary"'):text.index('id="dataset"')]
    assert "identical to default" in summary and "finetuned is left out: identical to default" in summary


def test_targets_without_patterns_say_why_and_what_to_run():
    from enformer_transfer.report.sections import _no_patterns

    summary = {"contributions": "dars", "targets": {"Oligo": {"regions": 6, "patterns": 0, "seqlets": 0},
                                                    "Astro": {"regions": 40, "patterns": 2, "seqlets": 90}}}
    text = _no_patterns(summary, "dars", 20)
    assert "No pattern for Oligo (6 regions, 0 seqlets)" in text and "Astro" not in text
    assert "at least 20 seqlets" in text and "--min-seqlets 10" in text and "--contributions dars" in text
    assert _no_patterns({"targets": {"Astro": {"patterns": 1}}}, "dars", 20) == ""
