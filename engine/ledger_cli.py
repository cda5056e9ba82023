"""``crm-engine ledger``: show and export the contact ledger. The logic is in engine.ledger."""
from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from engine.cli_tools import OptionError
from engine.errors import EngineError, Location, Problem


def _parse_since(_ctx, _param, value):
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise OptionError(f"'{value}' 不是 2026-11-20 这样的日期 / '{value}' is not a date like 2026-11-20") from None


def _customer_id(_ctx, _param, value):
    """Read as the exports' 客户编号 cells are (engine.coerce.to_id): spaces dropped, Ｃ０００４５３ → C000453."""
    if value is None:
        return None
    from engine.coerce import to_id

    cid = to_id(value)
    if cid is None:
        raise OptionError(f"'{value}' 不是客户编号 / '{value}' is not a customer id (客户编号)")
    return cid


def _unknown_run(ledger, run_id: str, path: Path) -> EngineError:
    """``--run`` names no run the ledger recorded: say so, with the newest run ids."""
    from engine.policy.schema import did_you_mean

    ids = [r["run_id"] for r in ledger.runs()]  # oldest first
    guess = did_you_mean(run_id, ids)
    if ids:
        newest = "，".join(reversed(ids[-5:]))
        fix = f"最近的运行 newest runs: {newest}" + (f"（共 {len(ids)} 次）" if len(ids) > 5 else "")
    else:
        fix = "台账中还没有任何运行 / the ledger has no runs yet"
    return EngineError(Problem(code="unknown-run", location=Location(file=path.as_posix()), fix=fix,
                               message=f"台账中没有运行 {run_id} / no such run: {run_id}" + (f"；是不是 {guess}？" if guess else "")))


def _withdraw(ledger, path: Path, run_id: str, reason: str, yes: bool, tz, outbox: Path) -> None:
    from datetime import datetime

    if not ledger.has_run(run_id):
        raise _unknown_run(ledger, run_id, path)
    earlier = ledger.withdrawn(run_id)
    if earlier is not None:
        raise EngineError(Problem(code="already-withdrawn", location=Location(file=path.as_posix()),
                                  message=f"运行 {run_id} 已于 {earlier[0]:%Y-%m-%d %H:%M} 撤回（{earlier[1]}） / "
                                          f"run {run_id} was withdrawn already",
                                  fix="要再次发出它的任务和消息，用 run --force 重跑这一批 / to issue it again, run that batch with --force"))
    [run] = [r for r in ledger.runs() if r["run_id"] == run_id]
    click.echo(f"撤回运行 {run_id}（as-of {run['as_of']:%Y-%m-%d %H:%M}，任务 {run['tasks']}，消息 {run['messages']}）：\n"
               "  它发出的任务和消息将不再拦截之后的运行（去重、频次上限），修正后的一批会重新发出它们。\n"
               "  只在这些任务和消息没有被执行、没有发出时撤回，否则客户会收到两次。")
    relied = _relied_on(ledger, run, outbox)
    if relied:
        names = "、".join(relied)
        click.echo(f"  注意：之后的运行 {names} 已因它发出的项拦下了任务或消息（去重、间隔）：那些运行的任务表和消息里没有这些项，"
                   f"撤回后由下一次运行重新派发。 / warning: later runs {names.replace('、', ', ')} relied on this run's rows "
                   "(dedupe/min-gap holds); the next run issues those items.")
    recalled = ledger.recall_count(run_id)
    if recalled:
        click.echo(f"  它撤回的 {recalled} 条此前已排期的消息（messages/recalls.jsonl）也不再算撤回：之后的运行会重新核对它们。")
    if not yes and not click.confirm("确定撤回？ Withdraw this run?", default=False):
        click.echo("未撤回 Nothing withdrawn.")
        return
    tasks, messages = ledger.withdraw(run_id, reason, datetime.now(tz).replace(tzinfo=None))
    folder = outbox / run_id
    click.echo(f"已撤回运行 {run_id}：任务 {tasks}，消息 {messages} 不再计入台账 / withdrawn ({path})")
    if folder.exists():
        click.echo(f"  {folder} 里的任务表和消息作废，不要再下发或发送；运行文件夹保留供审计。")
    click.echo("  下一步：修正导出或策略后重新运行 crm-engine run。")


def _relied_on(ledger, run: dict, outbox: Path) -> list[str]:
    """The runs recorded after ``run`` (not withdrawn) whose decision log shows an item held back by its
    ledger rows (``engine.guards.held_by_run``), read from their run folders in ``outbox``."""
    import json

    from engine.guards import held_by_run

    issued = {(e.customer_id, e.rule_id) for e in ledger.entries(run_id=run["run_id"])}
    marks = (run["run_id"], f"间隔不足：{run['as_of']:%Y-%m-%d}")  # cheap pre-filter on each line; the JSON decides
    relied = []
    for later in ledger.runs():
        log = outbox / later["run_id"] / "decisions.jsonl"
        if later["seq"] <= run["seq"] or later["withdrawn_at"] is not None or not log.is_file():
            continue
        with log.open(encoding="utf-8") as lines:
            if any(any(m in line for m in marks) and held_by_run(json.loads(line), run["run_id"], run["as_of"].date(), issued)
                   for line in lines):
                relied.append(later["run_id"])
    return relied


def _show_runs(ledger, path: Path) -> None:
    from engine.ledger import format_rows

    runs = ledger.runs()
    if not runs:
        click.echo(f"台账中还没有任何运行 / no runs yet ({path})")
        return
    rows = [[r["run_id"], f"{r['as_of']:%Y-%m-%d %H:%M}", str(r["tasks"]), str(r["messages"]),
             f"{r['withdrawn_at']:%Y-%m-%d %H:%M} {r['withdrawn_reason'] or ''}".strip() if r["withdrawn_at"] else ""]
            for r in runs]
    click.echo(format_rows(["运行编号", "as-of", "任务", "消息", "撤回"], rows))
    click.echo(f"共 {len(runs)} 次运行（{path}）")


@click.command("ledger")
@click.option("--ledger", "ledger_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The ledger file. Default: ledger.path of the guards policy, inside --outbox (outbox/ledger.sqlite).")
@click.option("--outbox", type=click.Path(path_type=Path, file_okay=False), default=Path("outbox"), show_default=True,
              help="The outbox folder the runs write to (where the default ledger lives).")
@click.option("--policies", type=click.Path(path_type=Path, file_okay=False), default=Path("policies"), show_default=True,
              help="Policy folder (its guards file may set another ledger path).")
@click.option("--customer", "customer_id", default=None, callback=_customer_id,
              help="Only this customer id (客户编号; read as in the exports: Ｃ０００４５３ is C000453).")
@click.option("--rule", "rule_id", default=None, help="Only this rule id.")
@click.option("--run", "run_id", default=None, help="Only what this run issued.")
@click.option("--kind", type=click.Choice(["task", "message"]), default=None, help="Only tasks or only messages.")
@click.option("--since", callback=_parse_since, default=None, help="Only runs with an as-of date on or after this date (YYYY-MM-DD).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many of the newest entries to show.")
@click.option("--export", "export_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write all matching entries to this .xlsx or .csv file instead of showing them.")
@click.option("--runs", "list_runs", is_flag=True, help="List the recorded runs (withdrawn ones marked) instead of entries.")
@click.option("--withdraw", "withdraw_id", default=None, metavar="RUN",
              help="Take back a run whose tasks and messages were not acted on (wrong people, wrong column): "
                   "what it issued no longer holds anything back, so the corrected batch issues it. Needs --reason.")
@click.option("--reason", default=None, help="Why the run is withdrawn (kept in the ledger for the auditors).")
@click.option("--yes", is_flag=True, help="Withdraw without asking for confirmation.")
def ledger_command(ledger_path: Path | None, outbox: Path, policies: Path, customer_id: str | None, rule_id: str | None,
                   run_id: str | None, kind: str | None, since: date | None, limit: int, export_path: Path | None,
                   list_runs: bool, withdraw_id: str | None, reason: str | None, yes: bool) -> None:
    """Show or export the contact ledger: every task and message earlier runs issued; list the runs,
    or withdraw one whose items were not acted on.

    \b
    Examples:
      crm-engine ledger                                  # the newest 50 entries
      crm-engine ledger --customer C00042                # one customer's history
      crm-engine ledger --rule CARE-BIRTHDAY-GREETING --since 2026-11-01
      crm-engine ledger --export ledger.xlsx             # everything, as a workbook
      crm-engine ledger --runs                           # every run, withdrawn ones marked
      crm-engine ledger --withdraw 2026-11-20_81c67e6c --reason "客户经理列读错，任务未下发"
    """
    from engine.guards import load_guard_policy_folder, resolve_ledger_path
    from engine.ledger import Ledger, export, format_table, show_rows

    if withdraw_id is not None and not (reason or "").strip():
        raise click.BadParameter("要写明撤回这次运行的原因 / say why the run is withdrawn, e.g. --reason \"客户经理列读错，任务未下发\"",
                                 param_hint="--reason")
    try:
        policy = load_guard_policy_folder(policies)
        path = resolve_ledger_path(policy, outbox, ledger_path)
        with Ledger(path, create=False) as ledger:
            if withdraw_id is not None:
                _withdraw(ledger, path, withdraw_id.strip(), reason.strip(), yes, policy.tz, outbox)
                return
            if list_runs:
                _show_runs(ledger, path)
                return
            if run_id is not None and not ledger.has_run(run_id):
                raise _unknown_run(ledger, run_id, path)
            filters = dict(customer_id=customer_id, rule_id=rule_id, since=since, kind=kind, run_id=run_id)
            if export_path is not None:
                if export_path.suffix.lower() not in (".xlsx", ".csv"):
                    raise click.BadParameter("export to a .xlsx or .csv file", param_hint="--export")
                n = export(ledger, export_path, **filters)
                click.echo(f"已导出 {n} 条记录 Exported {n} entries: {export_path}")
                return
            rows, total = show_rows(ledger, limit=limit, **filters)
    except EngineError as exc:
        click.echo(f"发现 {len(exc.problems)} 个问题 / {len(exc.problems)} problem(s):", err=True)
        for p in exc.problems:
            click.echo(str(p), err=True)
        sys.exit(1)
    if not rows:
        click.echo(f"没有符合条件的记录 No matching entries ({path})")
        return
    click.echo(format_table(rows))
    shown = f"显示最新 {len(rows)} 条，共 {total} 条" if total > len(rows) else f"共 {total} 条"
    click.echo(f"{shown}（{path}）；导出全部用 --export ledger.xlsx")
