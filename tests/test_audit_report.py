"""audit.xlsx and report.html from a real run; the report is opened in a real headless Chromium and
its charts must be in the rendered page and painted on the screen."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import zlib
from collections import Counter
from datetime import datetime
from html.parser import HTMLParser
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest

from engine.audit import (AUDIT_NAME, BAR_COLOR, REPORT_NAME, SLA_COLORS, _output_labels, refresh_outputs, rule_summary,
                          summarize_firings, write_audit, write_report)
from engine.decisions import Firing
from engine.outputs import STAGE_LABELS
from engine.explain import read_manifest
from engine.policy.loader import load_policies
from engine.readers import load_columns, read_inbox
from engine.run import RunOptions, evaluate_dataset, run_batch

from conftest import ROOT, SHIPPED_POLICIES, SHIPPED_TEMPLATES

AS_OF = datetime(2026, 11, 20, 23, 59, 59)
SAMPLE_INBOX = ROOT / "inbox"  # the bundled 500-customer sample: every stage has something to show


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real run of the shipped policies on the sample inbox, and the same evaluation in memory."""
    outbox = tmp_path_factory.mktemp("outbox")
    result = run_batch(RunOptions(policies=SHIPPED_POLICIES, inbox=SAMPLE_INBOX, outbox=outbox, as_of=AS_OF.date()))
    manifest = read_manifest(result.folder)
    policyset = load_policies(SHIPPED_POLICIES)
    dataset = read_inbox(SAMPLE_INBOX, load_columns(SHIPPED_POLICIES / "columns.yaml"))
    evaluation = evaluate_dataset(policyset, dataset, AS_OF.date(), SHIPPED_TEMPLATES)
    return manifest, evaluation, policyset


def test_audit_workbook(run, tmp_path: Path):
    manifest, evaluation, policyset = run
    path = write_audit(tmp_path, manifest, evaluation, policyset)
    wb = openpyxl.load_workbook(path, read_only=True)
    assert wb.sheetnames == ["运行清单", "文件", "规则汇总", "已撤回", "决策日志"]
    info = {key: value for _, key, value in wb["运行清单"].iter_rows(min_row=2, values_only=True)}
    assert info["run_id"] == manifest["run_id"] and info["as_of"] == "2026-11-20" and info["counts.customers"] == 500
    files = list(wb["文件"].iter_rows(min_row=2, values_only=True))
    assert ("输入", "customers.xlsx") == files[0][:2] and len(files[0][2]) == 64
    rules = {r[2]: r for r in wb["规则汇总"].iter_rows(min_row=2, values_only=True)}
    vt1_fired = sum(1 for f in evaluation.firings if f.rule_id == "VT-1")
    assert rules["VT-1"][:6] == ("客户分类", "value_tier", "VT-1", "近一年消费10万元及以上：业务贡献大",
                                 "tables/value_tier.xlsx!价值分层!A3", vt1_fired)
    assert rules["VT-1"][7] == f"value_tier=高 ×{vt1_fired}"
    # rules that never fired are listed too, with 0; so are stage-module decisions and settings rules
    assert {"CARE-FESTIVAL-SPRING", "sla-complaint", "CH-SIG-FREQUENCY-DROP", "churn_risk.level"} <= set(rules)
    assert rules["CARE-FESTIVAL-SPRING"][5] == 0
    assert rules["sla-complaint"][1] == "sla" and rules["sla-complaint"][5] > 0
    # settings rules carry the description written in their file (SLA targets, churn signals)
    assert rules["sla-complaint"][3] == "投诉：4 个工作小时内首次响应，2 个工作日内解决"
    assert rules["CH-SIG-FREQUENCY-DROP"][3] == "购买频率下降：此前90天至少2单，近90天下降一半及以上"
    log = wb["决策日志"]
    header = next(log.iter_rows(max_row=1, values_only=True))
    assert header == ("客户编号", "阶段", "策略", "规则编号", "位置", "输入值", "结果", "被拦截", "说明")
    assert sum(1 for _ in log.iter_rows(min_row=2)) == len(evaluation.firings)
    # 被拦截 names the guards as guards.xlsx does
    stopped = {r[7] for r in log.iter_rows(min_row=2, values_only=True) if r[7]}
    assert stopped and "没有联系方式" in stopped and not stopped & {"no-contact", "consent", "opt-out"}


def test_audit_is_reproducible_and_can_cap_the_log(run, tmp_path: Path):
    manifest, evaluation, policyset = run
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_audit(a, manifest, evaluation, policyset)
    write_audit(b, manifest, evaluation, policyset)
    assert (a / AUDIT_NAME).read_bytes() == (b / AUDIT_NAME).read_bytes()
    write_audit(b, manifest, evaluation, policyset, log_rows=5)
    wb = openpyxl.load_workbook(b / AUDIT_NAME, read_only=True)
    assert sum(1 for _ in wb["决策日志"].iter_rows(min_row=2)) == 5
    info = {key: value for _, key, value in wb["运行清单"].iter_rows(min_row=2, values_only=True)}
    assert info["decisions.jsonl"] == f"本工作簿只列出前 5 条决策（共 {len(evaluation.firings):,} 条）；完整的决策日志见 decisions.jsonl"


def test_refresh_outputs_lists_the_audit_files(run, tmp_path: Path):
    manifest, evaluation, policyset = run
    manifest = dict(manifest)
    write_audit(tmp_path, manifest, evaluation, policyset)
    write_report(tmp_path, manifest, evaluation)
    refresh_outputs(manifest, tmp_path)
    assert [e["path"] for e in manifest["outputs"]] == ["audit.xlsx", "report.html"]
    report = manifest["outputs"][1]
    assert report["sha256"] == hashlib.sha256((tmp_path / "report.html").read_bytes()).hexdigest()
    # An entry made earlier (run.py hashes the decision log on a thread) is taken as given.
    refresh_outputs(manifest, tmp_path, known={"report.html": {**report, "sha256": "made earlier"}})
    assert [e["sha256"] == "made earlier" for e in manifest["outputs"]] == [False, True]


def test_report_is_self_contained_and_reproducible(run, tmp_path: Path):
    manifest, evaluation, _ = run
    path = write_report(tmp_path, manifest, evaluation)
    html = path.read_text(encoding="utf-8")
    assert path.read_bytes() == write_report(tmp_path / "..", manifest, evaluation).read_bytes()
    # offline: nothing is fetched (the only URL is the SVG namespace name, which is never loaded)
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"\b(src|href)\s*=", html)
    assert re.findall(r"https?://[^\"' ]+", html) == ["http://www.w3.org/2000/svg"] * html.count("<svg")
    for section in ("classes", "sla", "churn", "tasks", "messages", "rules", "files"):
        assert f'<section id="{section}">' in html
    # the guards chart names the guards as guards.xlsx does, not by their codes
    guards_section = html[html.index('<section id="guards">'):]
    guards_section = guards_section[:guards_section.index("</section>")]
    assert "没有联系方式" in guards_section and "no-contact" not in guards_section


def test_report_escapes_customer_data(run, tmp_path: Path):
    manifest, evaluation, _ = run
    manifest = dict(manifest, run_id="<b>x</b>")
    html = write_report(tmp_path, manifest, evaluation).read_text(encoding="utf-8")
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def test_summary_matches_the_log_and_is_shared_by_both_files(run, tmp_path: Path):
    """summarize_firings against plain firing-by-firing counts; the files are the same with or
    without a summary passed in."""
    manifest, evaluation, policyset = run
    firings = evaluation.firings
    summary = summarize_firings(firings, policyset)
    assert summary.by_rule == Counter(f"{f.rule_id}（{STAGE_LABELS.get(f.stage, f.stage)}）" for f in firings)
    assert summary.guards == Counter(g.strip() for f in firings if f.suppressed_by for g in f.suppressed_by.split(","))
    assert summary.guards  # the sample has customers without any contact
    sla = [out["sla"] for f in firings if f.stage == "sla" for out in f.outputs if "sla" in out]
    assert summary.sla_tracked == len(sla) > 0
    assert summary.sla_status["first_response"] == Counter(o["first_response"]["status"] for o in sla if o.get("first_response"))
    tags = [name for f in firings if f.stage == "classification" for out in f.outputs
            for name, value in out.get("set", {}).items() if isinstance(value, (str, bool))]
    assert summary.classification_tags == list(dict.fromkeys(tags))
    by_key = {(s.policy, s.rule_id): s for s in summary.rules}
    groups: dict[tuple[str, str], list[Firing]] = {}
    for f in firings:
        groups.setdefault((f.policy_id, f.rule_id), []).append(f)
    for key, group in groups.items():
        s = by_key[key]
        assert (s.fired, s.customers, s.suppressed) == (len(group), len({f.customer_id for f in group}),
                                                              sum(1 for f in group if f.suppressed_by))
        assert s.produced == Counter(label for f in group for out in f.outputs for label in _output_labels(out))
    assert [(s.policy, s.rule_id) for s in rule_summary(firings, policyset)] == [(s.policy, s.rule_id) for s in summary.rules]

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_audit(a, manifest, evaluation, policyset)
    write_report(a, manifest, evaluation)
    write_audit(b, manifest, evaluation, policyset, summary=summary)
    write_report(b, manifest, evaluation, summary=summary)
    for name in (AUDIT_NAME, REPORT_NAME):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_rule_summary_counts_shared_and_interleaved_outputs():
    """A tag-only rule's firings share one outputs list; runs of it broken by other rules' firings
    still count every firing, and values that are equal but show differently (True, 1) are not merged."""
    shared = [{"set": {"vip": True}}]
    firings = [
        Firing("C1", "classification", "p", "VIP", "p.yaml:1:1", {}, shared),
        Firing("C1", "classification", "p", "ONE", "p.yaml:2:1", {}, [{"set": {"vip": 1}}]),
        Firing("C2", "classification", "p", "VIP", "p.yaml:1:1", {}, shared),
        Firing("C2", "classification", "p", "VIP", "p.yaml:1:1", {}, shared),
        Firing("C3", "care", "p", "TASK", "p.yaml:3:1", {}, [{"task": {"suppressed_by": "consent"}}], suppressed_by="consent"),
        # Issued before: no lost work, and not called 被拦截 (the reviewer read "任务（被拦截）×226" as lost tasks).
        Firing("C4", "care", "p", "AGAIN", "p.yaml:5:1", {}, [{"task": {"suppressed_by": "dedupe"}}], suppressed_by="dedupe"),
        Firing("C5", "care", "p", "AGAIN", "p.yaml:5:1", {}, [{"task": {"suppressed_by": "min-gap"}}], suppressed_by="min-gap"),
        Firing("C5", "care", "p", "AGAIN", "p.yaml:5:1", {}, [{"message": {"channel": "sms", "suppressed_by": "dedupe"}}],
               suppressed_by="dedupe"),
        Firing("C3", "classification", "p", "VIP", "p.yaml:1:1", {}, shared),
        Firing("C4", "churn", "p", "DEC", "p.yaml:4:1", {}, [{"score": {"churn_score": Decimal("1.0")}}]),
        Firing("C5", "churn", "p", "DEC", "p.yaml:4:1", {}, [{"score": {"churn_score": Decimal("1.00")}}]),
    ]
    stats = {s.rule_id: s for s in rule_summary(firings)}
    assert dict(stats["DEC"].produced) == {"churn_score+1.0": 1, "churn_score+1.00": 1}
    assert (stats["VIP"].fired, stats["VIP"].customers, dict(stats["VIP"].produced)) == (4, 3, {"vip=是": 4})
    assert dict(stats["ONE"].produced) == {"vip=1": 1}
    assert (stats["TASK"].suppressed, dict(stats["TASK"].produced)) == (1, {"任务（被拦截）": 1})
    assert dict(stats["AGAIN"].produced) == {"任务（已发出过或重复）": 1, "任务（间隔不足）": 1, "消息 sms（已发出过或重复）": 1}
    assert summarize_firings(firings).classification_tags == ["vip"]


# ---- the headless browser ---------------------------------------------------------------------------

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian/Ubuntu: apt-get install -y chromium); the report is checked in a real browser")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, timeout=120, check=True)


class _Charts(HTMLParser):
    """Counts the bars of each chart in the DOM Chromium built."""

    def __init__(self):
        super().__init__()
        self.charts: dict[str, list[float]] = {}
        self.current: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "chart" in (a.get("class") or ""):
            self.current = a["id"]
            self.charts[self.current] = []
        elif tag == "rect" and a.get("class") == "bar" and self.current:
            self.charts[self.current].append(float(a["width"]))

    def handle_endtag(self, tag):
        if tag == "svg":
            self.current = None


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, pixel rows without filter bytes) of an 8-bit RGB/RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, chunk = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, interlace = (int.from_bytes(chunk[0:4], "big"), int.from_bytes(chunk[4:8], "big"),
                                                      chunk[8], chunk[9], chunk[12])
            assert depth == 8 and color in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += chunk
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    out, prev, i = bytearray(), bytearray(stride), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):  # undo the PNG row filter
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + ((a + b) >> 1)) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def count_color(pixels: bytes, bpp: int, hex_color: str) -> int:
    rgb = bytes.fromhex(hex_color.lstrip("#"))
    return sum(1 for k in range(0, len(pixels), bpp) if pixels[k:k + 3] == rgb)


@needs_chromium
def test_report_charts_render_in_headless_chromium(run, tmp_path: Path):
    manifest, evaluation, _ = run
    report = write_report(tmp_path, manifest, evaluation)

    dom = chromium(tmp_path, "--dump-dom", report.as_uri()).stdout.decode("utf-8")
    charts = _Charts()
    charts.feed(dom)
    tasks = {}
    for t in evaluation.tasks:
        tasks[t.assignee] = tasks.get(t.assignee, 0) + 1
    assert len(charts.charts["chart-tasks-owner"]) == len(tasks)  # one bar per person
    assert len(charts.charts["chart-class-value_tier"]) == 3  # 高 中 低
    assert len(charts.charts["chart-churn-levels"]) == 3
    assert charts.charts["chart-sla-first_response"] and charts.charts["chart-messages-channel"]
    assert all(max(widths) > 100 for widths in charts.charts.values())  # the longest bar of each chart is drawn long

    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1150,2400", "--force-device-scale-factor=0.5",
             "--hide-scrollbars", report.as_uri())
    width, height, bpp, pixels = read_png(shot)
    assert (width, height) == (575, 1200)
    painted = sum(1 for k in range(0, len(pixels), bpp) if pixels[k:k + 3] != b"\xff\xff\xff")
    assert painted > 0.05 * width * height, "the page is (nearly) blank"
    assert count_color(pixels, bpp, BAR_COLOR) > 2000, "no blue bars painted"
    assert count_color(pixels, bpp, SLA_COLORS["met"]) > 200, "no SLA 'met' bars painted"


def test_the_runs_warnings_are_kept_in_manifest_report_and_audit(run, tmp_path: Path):
    """What the run printed besides its results stays with the run folder: the sample run on
    2026-11-20 is told that 2027 has no holiday data yet; one in June is told nothing."""
    manifest, evaluation, policyset = run
    (warning,) = manifest["warnings"]
    assert {k: warning[k] for k in ("code", "severity", "where")} == {
        "code": "calendar-year-ahead", "severity": "warning", "where": "calendar.yaml:22:3"}
    assert warning["message"].startswith("日历 'standard' 还没有 2027 年的法定节假日")
    html = write_report(tmp_path, manifest, evaluation).read_text(encoding="utf-8")
    section = html[html.index('<section id="warnings">'):html.index("</section>", html.index('<section id="warnings">'))]
    assert "<code>calendar.yaml:22:3</code>：日历 &#39;standard&#39; 还没有 2027 年的法定节假日" in section
    assert "处理办法 fix：国务院公布 2027 年放假安排后" in section
    info = {key: value for _, key, value in openpyxl.load_workbook(write_audit(tmp_path, manifest, evaluation, policyset),
                                                                    read_only=True)["运行清单"].iter_rows(min_row=2, values_only=True)}
    assert info["warnings.1"].startswith("calendar.yaml:22:3: 日历 'standard' 还没有 2027 年的法定节假日")
    assert "[calendar-year-ahead]; fix: 国务院公布 2027 年放假安排后" in info["warnings.1"]

    june = run_batch(RunOptions(policies=SHIPPED_POLICIES, inbox=SAMPLE_INBOX, outbox=tmp_path / "june",
                                as_of=datetime(2026, 6, 1).date()))
    assert june.warnings == [] and read_manifest(june.folder)["warnings"] == []
    assert '<section id="warnings">' not in (june.folder / REPORT_NAME).read_text(encoding="utf-8")


def _report_template_copy(policy_copy: Path, old: str, new: str) -> Path:
    path = policy_copy.parent / "templates" / "report" / "report.html.j2"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_validate_names_the_report_templates_mistakes(policy_copy: Path):
    from engine.validate import validate_policies

    path = _report_template_copy(policy_copy, "{{ manifest.run_id }}</code>", "{{ manifest.runid }}</code>")
    line = next(n for n, x in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "manifest.runid" in x)
    (problem,) = [p for p in validate_policies(policy_copy) if p.code.startswith("template")]
    assert (problem.code, problem.location.file, problem.location.line) == ("template-undefined", "report/report.html.j2", line)
    assert problem.message == (f"report template report/report.html.j2 line {line}: UndefinedError: "
                               "'dict object' has no attribute 'runid'")
    path.write_text(path.read_text(encoding="utf-8").replace("{% for section in sections %}", "{% for section in %}"),
                    encoding="utf-8")
    (problem,) = [p for p in validate_policies(policy_copy) if p.code.startswith("template")]
    assert problem.code == "template-syntax" and problem.location.file == "report/report.html.j2"
    assert problem.message.startswith("模板 report/report.html.j2 第 ")


def test_a_report_template_mistake_met_only_with_data_stops_the_run_cleanly(policy_copy: Path, tmp_path: Path):
    """A mistake inside the charts (no chart in validate's stand-in report): the run stops with the
    template's file and line, and leaves no run folder."""
    from engine.errors import PolicyError

    path = _report_template_copy(policy_copy, "<h3>{{ chart.title }}</h3>", "<h3>{{ chart.titel }}</h3>")
    line = next(n for n, x in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if "chart.titel" in x)
    with pytest.raises(PolicyError) as info:
        run_batch(RunOptions(policies=policy_copy, inbox=SAMPLE_INBOX, outbox=tmp_path / "out", as_of=AS_OF.date()))
    (problem,) = info.value.problems
    assert problem.code == "template-undefined" and problem.location.file == "report/report.html.j2"
    assert problem.message == (f"report template report/report.html.j2 line {line}: UndefinedError: "
                               "'engine.audit.Chart object' has no attribute 'titel'") and problem.location.line == line
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_dir()] == []


def test_the_reports_sla_figures_are_sla_xlsx_kpis_per_ticket(run, tmp_path: Path):
    # The report showed per-clock on-time rates and counted an overdue ticket once per overdue clock
    # (4 where sla.xlsx and the escalation tasks say 2); the seeds' 投诉处理及时率 was missing.
    manifest, evaluation, _ = run
    html = write_report(tmp_path, manifest, evaluation).read_text(encoding="utf-8")
    section = html[html.index('<section id="sla">'):]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", section[:section.index("</section>")]))
    (workbook,) = evaluation.modules["sla"].workbooks().values()
    kpi = {(r[0], r[1]): r for r in next(s for s in workbook.sheets if s.name == "KPI").rows}
    overall, complaints = kpi[("总体", "全部")], kpi[("互动类型", "投诉")]
    for label, value in (("问题解决率", f"{overall[4]:.1%}"), ("处理及时率", f"{overall[7]:.1%}"),
                         ("投诉处理及时率", f"{complaints[7]:.1%}"), ("平均满意度", f"{overall[9]:.2f}"),
                         ("超时未完成的工单", f"{overall[10]:,}")):
        assert f"{value} {label}" in text
    assert "时钟数" not in text


def test_counts_in_the_run_files_are_whole_numbers_and_the_manifest_rows_are_named(tmp_path: Path):
    # An auditor reading audit.xlsx, sla.xlsx or a task sheet (openpyxl, pandas) gets 586, not '586' or 586.0.
    from conftest import run_cli

    folder = run_cli(ROOT / "inbox", tmp_path / "out", "2026-11-20")
    audit = openpyxl.load_workbook(folder / AUDIT_NAME, read_only=True)
    rows = list(audit["运行清单"].iter_rows(values_only=True))
    assert rows[0] == ("项目", "键 key", "值")
    named = {key: (label, value) for label, key, value in rows[1:]}
    assert named["run_id"] == ("运行编号", folder.name)
    assert named["counts.customers"] == ("数量 · 客户", 500)
    assert named["counts.guards.suppressed_by_guard.consent"] == ("数量 · 发送保护 · 被拦截（按保护规则） · 营销同意", 66)
    assert named["counts.sla.first_response.met"][0] == "数量 · 服务时限 · 首次响应 · 按时"
    assert named["counts.care.is_member_day"][1] in ("是", "否")
    assert all(type(value) is int for key, (_, value) in named.items() if key.startswith("counts.") and key != "counts.care.is_member_day"
               and not key.startswith("counts.care.festivals_due")), named
    rules = list(audit["规则汇总"].iter_rows(min_row=2, values_only=True))
    assert rules and all(type(r[5]) is int and type(r[6]) is int and type(r[8]) is int for r in rules)
    kpi = list(openpyxl.load_workbook(folder / "sla.xlsx", read_only=True)["KPI"].iter_rows(values_only=True))
    assert kpi[1:] and all(type(r[kpi[0].index("跟踪数")]) is int for r in kpi[1:])
    sheet = openpyxl.load_workbook(sorted((folder / "tasks").iterdir())[0], read_only=True).worksheets[0]
    tasks = list(sheet.iter_rows(values_only=True))
    assert tasks[1:] and all(type(r[tasks[0].index("第几次")]) is int for r in tasks[1:])


def test_rule_summary_counts_customers_in_any_firing_order():
    """A rule's 客户数 is its distinct customers: counted as the customer id changes while firings come by
    customer (a run's), and by set otherwise: out of order, or the same rule id in two stages."""
    def firing(customer: str, rule: str = "R1", stage: str = "care") -> Firing:
        return Firing(customer, stage, "p", rule, "care.yaml:1:1", {}, [{"set": {"t": "x"}}])

    in_order = [firing("C1"), firing("C1"), firing("C2"), firing("C3", "R2"), firing("C3")]
    shuffled = [firing("C2"), firing("C1"), firing("C2"), firing("C1"), firing("C3", "R2")]
    two_stages = [firing("C1"), firing("C2"), firing("C1", stage="churn"), firing("C3", stage="churn")]
    for firings, expected in ((in_order, {"R1": 3, "R2": 1}), (shuffled, {"R1": 2, "R2": 1}), (two_stages, {"R1": 3})):
        assert {s.rule_id: s.customers for s in rule_summary(firings)} == expected
