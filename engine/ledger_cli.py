"""``crm-engine ledger``: show and export the contact ledger. The logic is in engine.ledger."""
from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from engine.errors import EngineError, Location, Problem


def _parse_since(_ctx, _param, value):
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a date like 2026-11-20") from None


def _customer_id(_ctx, _param, value):
    """Read as the exports' 客户编号 cells are (engine.coerce.to_id): spaces dropped, Ｃ０００４５３ → C000453."""
    if value is None:
        return None
    from engine.coerce import to_id

    cid = to_id(value)
    if cid is None:
        raise click.BadParameter(f"'{value}' is not a customer id (客户编号)")
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
def ledger_command(ledger_path: Path | None, outbox: Path, policies: Path, customer_id: str | None, rule_id: str | None,
                   run_id: str | None, kind: str | None, since: date | None, limit: int, export_path: Path | None) -> None:
    """Show or export the contact ledger: every task and message earlier runs issued.

    \b
    Examples:
      crm-engine ledger                                  # the newest 50 entries
      crm-engine ledger --customer C00042                # one customer's history
      crm-engine ledger --rule CARE-BIRTHDAY-GREETING --since 2026-11-01
      crm-engine ledger --export ledger.xlsx             # everything, as a workbook
    """
    from engine.guards import load_guard_policy_folder, resolve_ledger_path
    from engine.ledger import Ledger, export, format_table, show_rows

    try:
        path = resolve_ledger_path(load_guard_policy_folder(policies), outbox, ledger_path)
        with Ledger(path, create=False) as ledger:
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
