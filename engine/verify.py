"""``crm-engine verify outbox/<run-id>``: re-run a finished run and confirm it gives the same files.

1. Read the run's ``manifest.json``. Every input, policy and template file it recorded must still be
   there with the same sha256 (folders from the manifest's ``roots``, or given explicitly if they
   moved); otherwise say which files are missing or changed, and stop.
2. Run the batch again from those files, with the recorded as-of instant and engine, into a temporary
   outbox (the original run folder is not touched), with a copy of the run's contact ledger: the
   re-run has the same run id, so the guards see the runs recorded before it, as the run did.
3. Compare every output file's sha256 with the manifest's ``outputs`` list: identical, or which files
   differ, are missing from the re-run or are new in it. Files now present in the inbox, policy or
   template folder that the run did not read are reported too (they change what a run reads), and so
   are files in the run folder its manifest does not list, manifest entries (counts, warnings, …;
   not the folders in ``roots``) that differ from the re-run's, and contact-ledger rows of the run that
   the re-run would not have recorded, or that are missing (later runs would issue those again); the
   messages the run recalled count as its rows, a later run's recall of the run's messages does not.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from engine.errors import EngineError, Location, Problem
from engine.explain import changed_files, read_manifest
from engine.outbox import sha256_file


@dataclass
class VerifyResult:
    run_id: str
    changed_inputs: list[tuple[str, str, str]] = field(default_factory=list)  # (group, path, missing/changed)
    new_inputs: list[tuple[str, str]] = field(default_factory=list)  # (group, path) read by the re-run, not by the run
    differ: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # outputs of the run the re-run did not produce
    extra: list[str] = field(default_factory=list)  # outputs the re-run produced that the run did not
    unlisted: list[str] = field(default_factory=list)  # files in the run folder its manifest does not list (added later)
    manifest_differs: list[str] = field(default_factory=list)  # manifest.json entries the re-run recorded otherwise
    ledger_missing: list[str] = field(default_factory=list)  # keys the re-run issued that the ledger lacks for this run
    ledger_extra: list[str] = field(default_factory=list)  # keys the ledger has for this run that the re-run did not issue
    ledger_differs: list[str] = field(default_factory=list)  # keys both have, recorded with other details (assignee, time…)
    same: int = 0
    rerun_id: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rerun(self) -> bool:
        return self.rerun_id is not None

    @property
    def identical(self) -> bool:
        return self.rerun and not (self.changed_inputs or self.new_inputs or self.differ or self.missing or self.extra
                                   or self.unlisted or self.manifest_differs or self.ledger_missing or self.ledger_extra
                                   or self.ledger_differs)


def _roots(manifest: dict[str, Any], inbox: Path | None, policies: Path | None, templates: Path | None) -> dict[str, Path]:
    recorded = manifest.get("roots") or {}
    roots = {}
    for key, given in (("inbox", inbox), ("policies", policies), ("templates", templates)):
        if given is not None:
            roots[key] = Path(given).resolve()
        elif recorded.get(key):
            roots[key] = Path(recorded[key])
        else:
            raise EngineError(Problem(code="bad-manifest", message=f"manifest.json 没有记录 {key} 文件夹",
                                      location=Location(file="manifest.json"), fix=f"用 --{key} 指定"))
    return roots


def _entries(manifest: dict[str, Any], group: str) -> dict[str, str]:
    return {e["path"]: e["sha256"] for e in manifest.get(group, [])}


def _ledger_path(run_folder: Path, manifest: dict[str, Any], given: Path | None) -> Path | None:
    """The contact ledger the run used: ``roots.ledger`` is relative to the outbox the run folder is in."""
    if given is not None:
        return Path(given)
    recorded = (manifest.get("roots") or {}).get("ledger")
    if not recorded:
        return None
    return Path(recorded) if Path(recorded).is_absolute() else run_folder.resolve().parent / recorded


def verify_run(run_folder: Path, inbox: Path | None = None, policies: Path | None = None,
               templates: Path | None = None, keep: Path | None = None, ledger: Path | None = None) -> VerifyResult:
    """``keep``: a folder to leave the re-run in (for looking at the differences); default: a temporary one.
    ``ledger``: where the run's contact ledger is now, if it moved."""
    from engine.ledger import Ledger

    from engine.run import RunOptions, run_batch

    run_folder = Path(run_folder)
    manifest = read_manifest(run_folder)
    result = VerifyResult(manifest.get("run_id", run_folder.name))
    roots = _roots(manifest, inbox, policies, templates)
    result.changed_inputs = changed_files(manifest, {k: str(v) for k, v in roots.items()})
    if result.changed_inputs:
        return result
    # A workbook added to the inbox since would be read by the re-run (a different batch): stop here too.
    from engine.readers import export_files

    from engine.policy.loader import policy_files
    from engine.run import template_files

    recorded = set(_entries(manifest, "inputs"))
    if roots["inbox"].is_dir():
        result.new_inputs = [("inputs", p.name) for p in export_files(roots["inbox"]) if p.name not in recorded]
    # Likewise a template or policy file added since (a draft template for a new festival): the re-run
    # would be another batch, every output "differs".
    for group, files in (("policies", policy_files(roots["policies"]) if roots["policies"].is_dir() else []),
                         ("templates", template_files(roots["templates"]))):
        known = set(_entries(manifest, group))
        result.new_inputs += [(group, path) for path in (p.relative_to(roots[group]).as_posix() for p in files)
                              if path not in known]
    if result.new_inputs:
        return result

    as_of = date.fromisoformat(manifest["as_of"])
    as_of_time = (datetime.fromisoformat(manifest["as_of_time"])
                  if manifest.get("as_of_time") and not manifest.get("as_of_is_date") else None)
    tmp = Path(tempfile.mkdtemp(prefix="crm-verify-")) if keep is None else Path(keep)
    try:
        # The guards read the contact ledger; the re-run gets a copy (the real one is left alone) and,
        # being the same run id, sees only the runs recorded before it, as the run did (engine.ledger).
        ledger_copy = None
        ledger_path = _ledger_path(run_folder, manifest, ledger)
        if ledger_path is not None and ledger_path.is_file():
            tmp.mkdir(parents=True, exist_ok=True)
            ledger_copy = tmp / "verify-ledger.sqlite"
            with Ledger(ledger_path, create=False) as real:
                real.copy_to(ledger_copy)
            with Ledger(ledger_copy, create=False) as scratch:
                scratch.forget_runs_after(result.run_id)
        elif ledger_path is not None:
            result.notes.append(f"联系台账 {ledger_path.as_posix()} 不在了：按空台账重新运行（去重和频次上限可能与当时不同；可用 --ledger 指定）")
        options = RunOptions(policies=roots["policies"], inbox=roots["inbox"], outbox=tmp, as_of=as_of,
                             as_of_time=as_of_time, templates=roots["templates"], engine=manifest.get("engine", "python"),
                             force=True, ledger=ledger_copy)
        rerun = run_batch(options)
        result.rerun_id = rerun.run_id
        new_manifest = json.loads((rerun.folder / "manifest.json").read_text(encoding="utf-8"))
        for group in ("inputs", "policies", "templates"):
            for path in sorted(set(_entries(new_manifest, group)) - set(_entries(manifest, group))):
                result.new_inputs.append((group, path))
        before, after = _entries(manifest, "outputs"), _entries(new_manifest, "outputs")
        for path in sorted(set(before) | set(after)):
            if path not in after:
                result.missing.append(path)
            elif path not in before:
                result.extra.append(path)
            elif before[path] != after[path]:
                result.differ.append(path)
            else:
                result.same += 1
        # The run folder itself may have been edited after the run: compare it with its manifest too.
        for path, digest in before.items():
            if path in result.differ or path in result.missing:
                continue  # already reported
            here = run_folder / path
            if not here.is_file() or sha256_file(here) != digest:
                result.differ.append(f"{path}（{'运行文件夹中已不存在' if not here.is_file() else '运行文件夹中的文件被改过'}）")
                result.same -= 1
        # A file put into the run folder afterwards (a forged task sheet) is in no manifest.
        listed = set(before) | {"manifest.json"}
        result.unlisted = sorted(p.relative_to(run_folder).as_posix() for p in run_folder.rglob("*")
                                 if p.is_file() and p.relative_to(run_folder).as_posix() not in listed)
        # The manifest is not in its own list: compare what it says (counts, warnings, engine, …) with
        # what the re-run says. Only the folders it was read from may differ (verify may be given others).
        result.manifest_differs = sorted(key for key in set(manifest) | set(new_manifest)
                                         if key != "roots" and manifest.get(key) != new_manifest.get(key))
        # The contact ledger's rows for this run are what keeps later runs from issuing its items
        # again: they must be the items the re-run issued (recorded in the copy), no more, no less.
        if ledger_copy is not None:
            with Ledger(ledger_path, create=False) as real, Ledger(ledger_copy, create=False) as again:
                # A withdrawn run's rows say when it was withdrawn; the re-run's cannot. A message the run
                # issued ahead may have been recalled by a later run since (recalled_by): that does not
                # change what the run issued. What the run itself recalled is compared below.
                recorded = {(e.kind, e.key): replace(e, withdrawn_at=None, recalled_by=None)
                            for e in real.entries(run_id=result.run_id)}
                issued = {(e.kind, e.key): replace(e, recalled_by=None) for e in again.entries(run_id=result.run_id)}
                recorded.update((("recall", key), row) for key, row in real.recalls_by(result.run_id).items())
                issued.update((("recall", key), row) for key, row in again.recalls_by(result.run_id).items())
            result.ledger_missing = sorted(f"{kind} {key}" for kind, key in issued.keys() - recorded.keys())
            result.ledger_extra = sorted(f"{kind} {key}" for kind, key in recorded.keys() - issued.keys())
            # Still deduped (the key is there), but the row no longer says what was issued.
            result.ledger_differs = sorted(f"{kind} {key}" for kind, key in issued.keys() & recorded.keys()
                                           if issued[kind, key] != recorded[kind, key])
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


GROUP_LABELS = {"inputs": "输入", "policies": "策略", "templates": "模板"}


def format_verify(result: VerifyResult) -> list[str]:
    lines = [f"核对运行 verify {result.run_id}"]
    if result.changed_inputs:
        lines.append("无法重新运行：运行时读取的文件已缺失或被修改 / recorded files changed:")
        for group, path, what in result.changed_inputs:
            lines.append(f"  {GROUP_LABELS.get(group, group)} {path}：{'缺失 missing' if what == 'missing' else '已修改 changed'}")
        return lines
    if result.new_inputs and not result.rerun:  # found before re-running: verify_run stopped there
        lines.append("无法重新运行：文件夹里有运行时没有的文件，重新运行会读入它们 / new files since the run:")
        lines.extend(f"  新文件 {GROUP_LABELS.get(group, group)} {path}：运行时没有" for group, path in result.new_inputs)
        options = "、".join(f"--{group.replace('inputs', 'inbox')}" for group in dict.fromkeys(g for g, _ in result.new_inputs))
        lines.append(f"  把它们移出，或用 {options} 指定只有原文件的文件夹 / move them out, or give {options.replace('、', ' / ')}")
        return lines
    lines.extend(f"  注意 {note}" for note in result.notes)
    if result.rerun_id != result.run_id:
        lines.append(f"重新运行得到的运行编号是 {result.rerun_id}（原为 {result.run_id}）")
    for group, path in result.new_inputs:  # read by the re-run although not found beforehand (e.g. a newly named table)
        lines.append(f"  新文件 {GROUP_LABELS.get(group, group)} {path}：运行时没有，重新运行时读入了")
    for path in result.differ:
        lines.append(f"  不同 differs: {path}")
    for path in result.missing:
        lines.append(f"  重新运行没有产生 missing: {path}")
    for path in result.extra:
        lines.append(f"  重新运行多出 extra: {path}")
    for path in result.unlisted:
        lines.append(f"  清单里没有的文件 not in the manifest: {path}（运行之后才放进运行文件夹）")
    for key in result.manifest_differs:
        lines.append(f"  清单 manifest.json 的 {key} 与重新运行的不同 differs")
    for item in result.ledger_missing:
        lines.append(f"  联系台账缺少 ledger lacks: {item}"
                     + ("（以后的运行不再算它已撤回）" if item.startswith("recall ") else "（以后的运行会再次发出）"))
    for item in result.ledger_extra:
        lines.append(f"  联系台账多出 ledger has extra: {item}")
    for item in result.ledger_differs:
        lines.append(f"  联系台账记录内容不同 ledger row differs: {item}（仍算已发出，但记录的内容与本次运行不符）")
    if result.identical:
        lines.append(f"一致 identical：{result.same} 个输出文件的 sha256 与清单相同，清单内容也相同")
    else:
        problems = len(result.differ) + len(result.missing) + len(result.extra) + len(result.unlisted)
        ledger = len(result.ledger_missing) + len(result.ledger_extra) + len(result.ledger_differs)
        lines.append(f"不一致 NOT identical：{problems} 个文件不同"
                     + ("，清单内容不同" if result.manifest_differs else "")
                     + (f"，联系台账 {ledger} 条不符" if ledger else "") + f"，{result.same} 个相同")
    return lines
