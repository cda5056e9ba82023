from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from engine.outbox import (
    MANIFEST_NAME,
    OutboxError,
    RunFolder,
    build_manifest,
    digest_files,
    make_run_id,
    sha256_file,
    tool_version,
    write_json,
    write_jsonl,
)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_success_publishes_folder(tmp_path):
    outbox = tmp_path / "outbox"
    with RunFolder(outbox, "2026-11-20_abcdef12") as run:
        assert run.path.parent == outbox
        assert run.path.name.startswith(".tmp-")
        (run.path / "tasks.xlsx").write_bytes(b"x")
        (run.path / "messages").mkdir()
        (run.path / "messages" / "a.txt").write_text("你好", encoding="utf-8")
        assert not (outbox / "2026-11-20_abcdef12").exists()  # not visible until done
    assert listing(outbox) == ["2026-11-20_abcdef12"]
    final = outbox / "2026-11-20_abcdef12"
    assert (final / "tasks.xlsx").read_bytes() == b"x"
    assert (final / "messages" / "a.txt").read_text(encoding="utf-8") == "你好"
    with pytest.raises(RuntimeError):
        run.path  # only inside the with block


def test_exception_leaves_no_folder_and_no_temp(tmp_path):
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "earlier-run").mkdir()
    with pytest.raises(ZeroDivisionError):
        with RunFolder(outbox, "2026-11-20_abcdef12") as run:
            (run.path / "partial.xlsx").write_bytes(b"half")
            1 / 0
    assert listing(outbox) == ["earlier-run"]


def test_keyboard_interrupt_also_cleans_up(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(tmp_path, "r1") as run:
            (run.path / "x").write_text("x")
            raise KeyboardInterrupt
    assert listing(tmp_path) == []


def test_existing_run_folder_is_an_error_without_overwrite(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "old.txt").write_text("old")
    with pytest.raises(OutboxError) as info:
        with RunFolder(tmp_path, "r1"):
            pytest.fail("should not start")
    problem = info.value.problems[0]
    assert problem.code == "run-exists"
    assert "r1" in problem.message
    assert listing(tmp_path) == ["r1"]
    assert (tmp_path / "r1" / "old.txt").read_text() == "old"


def test_run_folder_appearing_during_run_is_an_error(tmp_path):
    with pytest.raises(OutboxError):
        with RunFolder(tmp_path, "r1") as run:
            (run.path / "new.txt").write_text("new")
            (tmp_path / "r1").mkdir()  # e.g. another run finished first
    assert listing(tmp_path) == ["r1"]
    assert listing(tmp_path / "r1") == []


def test_overwrite_replaces(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "old.txt").write_text("old")
    with RunFolder(tmp_path, "r1", overwrite=True) as run:
        (run.path / "new.txt").write_text("new")
    assert listing(tmp_path) == ["r1"]
    assert listing(tmp_path / "r1") == ["new.txt"]


def test_overwrite_failure_keeps_previous_run(tmp_path):
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "old.txt").write_text("old")
    with pytest.raises(ValueError):
        with RunFolder(tmp_path, "r1", overwrite=True) as run:
            (run.path / "new.txt").write_text("new")
            raise ValueError("boom")
    assert listing(tmp_path) == ["r1"]
    assert listing(tmp_path / "r1") == ["old.txt"]


@pytest.mark.parametrize("bad", ["", ".", "..", ".hidden", "a/b", "a\\b", " x", "a:b"])
def test_run_id_must_be_a_plain_folder_name(tmp_path, bad):
    with pytest.raises(ValueError):
        RunFolder(tmp_path, bad)


def test_make_run_id():
    digest = hashlib.sha256(b"inputs").hexdigest()
    assert make_run_id(date(2026, 11, 20), digest) == f"2026-11-20_{digest[:8]}"
    assert make_run_id(datetime(2026, 11, 20, 23, 59), digest.upper()) == f"2026-11-20_{digest[:8]}"
    with pytest.raises(ValueError):
        make_run_id(date(2026, 11, 20), "xyz")


def test_digest_files_is_order_independent_and_content_sensitive(tmp_path):
    a, b = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    a.write_bytes(b"A")
    b.write_bytes(b"B")
    first = digest_files([a, b], root=tmp_path)
    assert first == digest_files([b, a], root=tmp_path)
    b.write_bytes(b"B2")
    assert digest_files([a, b], root=tmp_path) != first


def test_sha256_file(tmp_path):
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 10_000  # more than one read chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()


def test_manifest_hashes_are_exact(tmp_path):
    root = tmp_path
    (root / "inbox").mkdir()
    (root / "policies").mkdir()
    (root / "templates" / "messages" / "sms").mkdir(parents=True)
    files = {
        "inbox/客户.xlsx": b"customers",
        "inbox/orders.xlsx": b"orders" * 1000,
        "policies/rules.yaml": "规则: 1\n".encode("utf-8"),
        "templates/messages/sms/birthday.txt": "生日快乐".encode("utf-8"),
    }
    for rel, data in files.items():
        (root / rel).write_bytes(data)

    with RunFolder(root / "outbox", "2026-11-20_00000000") as run:
        (run.path / "tasks.xlsx").write_bytes(b"tasks")
        manifest = build_manifest(
            run_id="2026-11-20_00000000",
            as_of=date(2026, 11, 20),
            inputs=[root / "inbox/orders.xlsx", root / "inbox/客户.xlsx"],
            policies=[root / "policies/rules.yaml"],
            templates=[root / "templates/messages/sms/birthday.txt"],
            counts={"tasks": 3, "customers": 2},
            root=root,
            outputs_dir=run.path,
        )
        write_json(run.path / MANIFEST_NAME, manifest)

    def entry(rel: str) -> dict:
        data = files[rel]
        return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    assert manifest["inputs"] == [entry("inbox/orders.xlsx"), entry("inbox/客户.xlsx")]
    assert manifest["policies"] == [entry("policies/rules.yaml")]
    assert manifest["templates"] == [entry("templates/messages/sms/birthday.txt")]
    assert manifest["outputs"] == [{"path": "tasks.xlsx", "sha256": hashlib.sha256(b"tasks").hexdigest(), "size": 5}]
    assert manifest["counts"] == {"customers": 2, "tasks": 3}
    assert manifest["run_id"] == "2026-11-20_00000000"
    assert manifest["as_of"] == "2026-11-20"
    assert manifest["version"] == tool_version()
    assert manifest["tool"] == "crm-policy-engine"
    on_disk = json.loads((root / "outbox" / "2026-11-20_00000000" / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert on_disk == manifest


def test_manifest_paths_relative_to_each_groups_root(tmp_path):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "inbox" / "客户.xlsx").write_bytes(b"c")
    (tmp_path / "policies" / "care.yaml").write_bytes(b"p")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_bytes(b"o")
    try:
        manifest = build_manifest(
            run_id="r",
            as_of=date(2026, 11, 20),
            inputs=[tmp_path / "inbox" / "客户.xlsx"],
            inputs_root=tmp_path / "inbox",
            policies=[tmp_path / "policies" / "care.yaml", outside],
            policies_root=tmp_path / "policies",
            counts={"tasks_by_assignee": {"李娜": 2}, "tasks": 2},
        )
    finally:
        outside.unlink()
    assert [e["path"] for e in manifest["inputs"]] == ["客户.xlsx"]
    assert sorted(e["path"] for e in manifest["policies"]) == sorted(["care.yaml", outside.resolve().as_posix()])
    assert manifest["counts"] == {"tasks": 2, "tasks_by_assignee": {"李娜": 2}}
    assert manifest["templates"] == []


def test_manifest_extra_cannot_override(tmp_path):
    assert build_manifest(run_id="r", as_of=date(2026, 1, 1), extra={"note": "x"})["note"] == "x"
    with pytest.raises(ValueError):
        build_manifest(run_id="r", as_of=date(2026, 1, 1), extra={"run_id": "other"})


def test_write_json_is_deterministic(tmp_path):
    obj = {"b": [1, {"z": 1, "a": date(2026, 11, 20)}], "a": "客户", "d": Decimal("1.10"), "p": Path("x/y")}
    write_json(tmp_path / "1.json", obj)
    write_json(tmp_path / "2.json", dict(reversed(list(obj.items()))))
    raw = (tmp_path / "1.json").read_bytes()
    assert raw == (tmp_path / "2.json").read_bytes()
    assert raw.endswith(b"}\n") and b"\r" not in raw
    text = raw.decode("utf-8")
    assert '"a": "客户"' in text  # not \\u escaped
    assert text.index('"a"') < text.index('"b"')
    assert '"d": "1.10"' in text and '"p": "x/y"' in text and '"2026-11-20"' in text


def test_write_jsonl_is_deterministic(tmp_path):
    records = [{"b": 1, "a": "张三", "t": datetime(2026, 11, 20, 9, 0)}, {"x": [1, 2], "a": None}]
    assert write_jsonl(tmp_path / "1.jsonl", records) == 2
    assert write_jsonl(tmp_path / "2.jsonl", (dict(reversed(list(r.items()))) for r in records)) == 2
    raw = (tmp_path / "1.jsonl").read_bytes()
    assert raw == (tmp_path / "2.jsonl").read_bytes()
    assert raw.decode("utf-8") == (
        '{"a":"张三","b":1,"t":"2026-11-20T09:00:00"}\n'
        '{"a":null,"x":[1,2]}\n'
    )
    assert write_jsonl(tmp_path / "empty.jsonl", []) == 0
    assert (tmp_path / "empty.jsonl").read_bytes() == b""


def test_write_jsonl_dates_read_as_isoformat(tmp_path):
    # The decision log's dates and times are written as Python's isoformat() writes them.
    from datetime import date, timedelta, timezone
    from decimal import Decimal

    values = [date(2026, 1, 2), datetime(2026, 11, 20, 9, 0), datetime(2026, 11, 20, 9, 0, 0, 123),
              datetime(2026, 11, 20, 9, 0, tzinfo=timezone(timedelta(hours=8))), datetime(2026, 11, 20, tzinfo=timezone.utc)]
    write_jsonl(tmp_path / "d.jsonl", [{"v": v} for v in values] + [{"v": Decimal("1200.50")}])
    assert (tmp_path / "d.jsonl").read_text(encoding="utf-8").splitlines() == [
        '{"v":"2026-01-02"}', '{"v":"2026-11-20T09:00:00"}', '{"v":"2026-11-20T09:00:00.000123"}',
        '{"v":"2026-11-20T09:00:00+08:00"}', '{"v":"2026-11-20T00:00:00+00:00"}', '{"v":"1200.50"}']


def test_write_json_rejects_unknown_types(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "x.json", {"x": object()})


# --- after killed runs ---------------------------------------------------------------------------


def _ended_pid() -> int:
    """The id of a process that has ended."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_runs_folders_are_tidied_by_the_next_run(tmp_path):
    import os

    from engine.outbox import _this_host, tidy_after_killed_runs

    outbox = tmp_path / "outbox"
    host, dead, alive = _this_host(), _ended_pid(), os.getpid()
    made = {
        f".tmp-2026-11-20_aaaaaaaa-{host}-{dead}-0123abcd": "killed while writing",
        f".tmp-2026-11-20_bbbbbbbb-{host}-{alive}-0123abcd": "a run still going",
        f".tmp-2026-11-20_cccccccc-otherhost-{dead}-0123abcd": "a run on another machine",
        f".old-2026-11-20_dddddddd-{host}-{dead}-0123abcd": "set aside, its replacement never landed",
        f".old-2026-11-20_eeeeeeee-{host}-{dead}-0123abcd": "set aside, its replacement landed",
        "2026-11-20_eeeeeeee": "the replacement",
        ".tmp-notes": "not a run's",
    }
    for name, text in made.items():
        (outbox / name).mkdir(parents=True)
        (outbox / name / "note.txt").write_text(text, encoding="utf-8")

    assert tidy_after_killed_runs(outbox) == [
        "已恢复 2026-11-20_dddddddd（替换它的一次运行中途被中断）",
        f"已删除 .old-2026-11-20_eeeeeeee-{host}-{dead}-0123abcd（一次被中断的运行留下的临时文件夹）",
        f"已删除 .tmp-2026-11-20_aaaaaaaa-{host}-{dead}-0123abcd（一次被中断的运行留下的临时文件夹）",
    ]
    assert listing(outbox) == sorted([
        f".tmp-2026-11-20_bbbbbbbb-{host}-{alive}-0123abcd", f".tmp-2026-11-20_cccccccc-otherhost-{dead}-0123abcd",
        ".tmp-notes", "2026-11-20_dddddddd", "2026-11-20_eeeeeeee"])
    assert (outbox / "2026-11-20_dddddddd" / "note.txt").read_text(encoding="utf-8") == made[
        f".old-2026-11-20_dddddddd-{host}-{dead}-0123abcd"]
    assert (outbox / "2026-11-20_eeeeeeee" / "note.txt").read_text(encoding="utf-8") == "the replacement"
    assert tidy_after_killed_runs(outbox) == []  # nothing more to do
    assert tidy_after_killed_runs(tmp_path / "no-outbox-yet") == []


def test_working_folders_name_this_machine_and_process(tmp_path):
    import os

    from engine.outbox import _WORK_FOLDER_RE, _this_host

    with RunFolder(tmp_path, "2026-11-20_abcdef12") as run:
        m = _WORK_FOLDER_RE.match(run.path.name)
        assert m and (m["prefix"], m["run_id"], m["host"], int(m["pid"])) == (
            ".tmp-", "2026-11-20_abcdef12", _this_host(), os.getpid())


def test_a_day_without_messages_still_has_each_channels_messages_jsonl(tmp_path):
    # A sending system polls messages/<channel>/messages.jsonl: on a quiet day the file is there, empty,
    # for every channel of organization.yaml, and the manifest lists it with its sha256 like any output.
    from conftest import customer, run_cli, write_inbox

    inbox = write_inbox(tmp_path / "inbox", [customer("C1", 营销许可="否")])
    folder = run_cli(inbox, tmp_path / "out", "2026-11-20")
    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["counts"]["messages"] == 0
    assert listing(folder / "messages") == ["email", "sms", "wechat"]
    listed = {f["path"]: f["sha256"] for f in manifest["outputs"]}
    for channel in ("email", "sms", "wechat"):
        assert listing(folder / "messages" / channel) == ["messages.jsonl"]
        assert (folder / "messages" / channel / "messages.jsonl").read_bytes() == b""
        assert listed[f"messages/{channel}/messages.jsonl"] == hashlib.sha256(b"").hexdigest()
