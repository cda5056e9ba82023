"""What an ops staff member met while adding rules to a copy of the policies (not a programmer's
mistakes: a template saved by Notepad in the wrong encoding, a brace left open, a number tag, a
column the export does not have, a complaint left open too long). Each test makes the edit on a
real copy of the shipped policies and checks what the user sees: validate's line, a run's printed
output and its files."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from conftest import ROOT
from engine.cli import main
from engine.validate import format_problem, validate_policies

AS_OF = "2026-11-20"
SAVE_AS_UTF8 = ("把文件另存为 UTF-8 编码（记事本: 另存为 → 编码 → UTF-8；多数编辑器相同） / "
                "save the file as UTF-8 (Notepad: Save As → Encoding → UTF-8; most editors alike)")


def lines(policies: Path, severity: str | None = None) -> list[str]:
    """What validate prints, without the calendar's look-ahead warning (it depends on today's date)."""
    return [format_problem(p) for p in validate_policies(policies)
            if p.code != "calendar-year-ahead" and (severity is None or p.severity == severity)]


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- A. a template saved as "ANSI" (GBK) ----------------------------------------------------------

def save_as_gbk(path: Path) -> None:
    """What Notepad's "ANSI" does on Chinese Windows."""
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))


def test_a_template_saved_as_gbk_is_named_by_validate_run_and_test(tmp_path: Path, policy_copy: Path):
    """It used to end all three commands with a traceback (UnicodeDecodeError … position 46) that did
    not say which file."""
    template = policy_copy.parent / "templates" / "messages" / "wechat" / "festival.txt"
    template.write_text("{# greeting for a festival #}\n" + template.read_text(encoding="utf-8"), encoding="utf-8")
    save_as_gbk(template)
    data = template.read_bytes()
    bad_byte = next(i for i, b in enumerate(data) if b >= 0x80) + 1  # its first Chinese character, counted from 1
    assert data.count(b"\n", 0, bad_byte) == 1  # ...is on line 2
    expected = ("templates/messages/wechat/festival.txt:2:1: 错误 error: 文件不是 UTF-8 编码（第 2 行、文件第 "
                f"{bad_byte} 个字节读不出来，可能是用记事本“ANSI”或 GBK 保存的） / the file is not UTF-8 text "
                f"(byte {bad_byte}, on line 2, cannot be read; it was probably saved as ANSI or GBK) [not-utf8]"
                " — 修改建议: " + SAVE_AS_UTF8)
    assert lines(policy_copy) == [expected]

    outbox = tmp_path / "out"
    run = cli("run", "--policies", str(policy_copy), "--inbox", str(ROOT / "inbox"), "--outbox", str(outbox), "--as-of", AS_OF)
    assert run.exit_code == 1
    assert "templates/messages/wechat/festival.txt:2:1: error: 文件不是 UTF-8 编码（第 2 行" in run.output
    assert not outbox.exists() or not any(outbox.iterdir())  # it stopped before doing anything

    tested = cli("test", "--policies", str(policy_copy))
    assert tested.exit_code == 1
    assert expected in tested.output


def test_a_policy_file_saved_as_gbk_names_its_line(policy_copy: Path):
    save_as_gbk(policy_copy / "care" / "festivals.yaml")
    problems = [p for p in validate_policies(policy_copy) if p.code == "not-utf8"]
    assert [(str(p.location), p.fix) for p in problems] == [("care/festivals.yaml:1:1", SAVE_AS_UTF8)]


def test_a_template_saved_with_a_bom_and_windows_line_ends_still_works(tmp_path: Path, policy_copy: Path):
    """Notepad's "UTF-8 with BOM": the same messages as the file without the BOM."""
    outboxes = []
    for name, policies in (("plain", ROOT / "policies"), ("bom", policy_copy)):
        if name == "bom":
            for template in (policy_copy.parent / "templates" / "messages").rglob("*.txt"):
                text = template.read_text(encoding="utf-8")
                template.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
            assert lines(policy_copy, "error") == []
        outbox = tmp_path / name
        assert cli("run", "--policies", str(policies), "--inbox", str(ROOT / "inbox"), "--outbox", str(outbox),
                   "--as-of", AS_OF, "--ledger", str(tmp_path / f"{name}.sqlite")).exit_code == 0
        outboxes.append(outbox)
    sent = [sorted(p.read_text(encoding="utf-8") for p in o.rglob("messages*.jsonl")) for o in outboxes]
    assert sent[0] and sent[0] == sent[1]
