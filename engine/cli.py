"""The ``crm-engine`` command. Commands only parse arguments, call library functions and print."""
from __future__ import annotations

import logging
import os
import sqlite3
import sys
from datetime import date, datetime
from pathlib import Path

import click

from engine import __version__
from engine.cli_tools import OptionError, existing_inbox, parse_as_of, split_as_of
from engine.errors import EngineError, Location, Problem


def _parse_date(_ctx, _param, value):
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise OptionError(f"'{value}' 不是 2026-11-20 这样的日期 / '{value}' is not a date like 2026-11-20") from None


def _fail(exc: EngineError) -> None:
    click.echo(f"发现 {len(exc.problems)} 个问题 / {len(exc.problems)} problem(s):", err=True)
    for p in exc.problems:
        click.echo(str(p), err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="crm-engine")
def main() -> None:
    """crm-engine: apply customer-relationship policies to Excel exports.

    \b
    Typical day:
      crm-engine validate --policies policies          # after editing a policy file
      crm-engine run --inbox inbox --outbox outbox      # the batch run
    """


@main.command()
@click.option("--policies", type=click.Path(path_type=Path, file_okay=False), default=Path("policies"), show_default=True,
              help="Folder with the policy files (YAML and .xlsx decision tables).")
@click.option("--inbox", type=click.Path(path_type=Path, file_okay=False), callback=existing_inbox, default=Path("inbox"),
              show_default=True,
              help="Folder with the Excel exports (customers, interactions, orders).")
@click.option("--outbox", type=click.Path(path_type=Path, file_okay=False), default=Path("outbox"), show_default=True,
              help="Where the run folder is written.")
@click.option("--as-of", "as_of", callback=parse_as_of, default=None,
              help="The date the run looks at (YYYY-MM-DD: facts up to the end of that day, messages from its send_time), "
                   "or an instant (YYYY-MM-DDTHH:MM). Default: now.")
@click.option("--templates", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Message templates folder. Default: templates/ beside the policy folder.")
@click.option("--engine", "engine_name", type=click.Choice(["python", "durable"]), default="python", show_default=True,
              help="Rule evaluation backend.")
@click.option("--force", is_flag=True, help="Run again even if this exact batch already has a run folder (replaces it).")
@click.option("--cross-check", is_flag=True,
              help="Evaluate with both backends (python and durable_rules); stop with the differences if they disagree.")
@click.option("--ledger", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The contact ledger (SQLite) that remembers what was issued. Default: ledger.sqlite in the outbox.")
def run(policies: Path, inbox: Path, outbox: Path, as_of: date | datetime | None, templates: Path | None, engine_name: str,
        force: bool, cross_check: bool, ledger: Path | None) -> None:
    """Run the policies over the exports in INBOX and write a run folder into OUTBOX.

    On Linux with two or more cores, a large inbox is evaluated and written with two helper
    processes (the files are the same either way). CRM_ENGINE_PROCESSES=1 keeps everything in one
    process; CRM_ENGINE_PROCESSES=2 uses the helpers whatever the size."""
    from engine.run import RunOptions, run_batch

    as_of_day, as_of_time = split_as_of(as_of, policies)
    options = RunOptions(policies=policies, inbox=inbox, outbox=outbox, as_of=as_of_day, as_of_time=as_of_time,
                         templates=templates, engine=engine_name, force=force, ledger=ledger,
                         cross_check=cross_check)
    try:
        result = run_batch(options, progress=lambda msg: click.echo(msg, err=True))
    except EngineError as exc:
        _fail(exc)
        return
    except (OSError, sqlite3.Error) as exc:  # a full disk, a read-only ledger: said plainly (the outbox is as it was)
        where = getattr(exc, "filename", None) or (ledger or outbox)
        _fail(EngineError(Problem("cannot-write", f"运行无法写出结果或联系台账（{exc}）：什么也没有发出 / "
                                  f"the run could not write its results or the contact ledger ({exc}); nothing was issued",
                                  Location(file=str(where)),
                                  fix="检查结果文件夹和台账文件是否可写、磁盘是否已满 / "
                                      "check that the outbox folder and the ledger file are writable and the disk is not full")))
        return
    if _ENDING_AT_ONCE:
        _KEPT_UNTIL_EXIT.append(result)  # its facts and decisions: see console_main
    if result.already_done:
        for w in result.warnings:
            click.echo(str(w), err=True)
        click.echo(f"这一批数据已经运行过（输入、策略、模板和日期都相同），结果在：{result.folder}")
        click.echo("没有发出新的内容；要重新运行这一批，加 --force / "
                   "This exact batch was already run; nothing new was issued. Use --force to run it again.")
        if cross_check:  # nothing was evaluated, so nothing was compared either
            click.echo("没有做交叉核对：这一批没有重新评估；要核对请加 --force / not cross-checked: add --force to evaluate it again")
        return
    for w in result.warnings:
        click.echo(str(w), err=True)
    c = result.counts
    shown = f"{options.as_of_time:%Y-%m-%d %H:%M}" if options.as_of_time else options.as_of.isoformat()
    click.echo(f"运行完成 run {result.run_id}（as-of {shown}）")
    click.echo(f"  客户 {c['customers']}，互动 {c['interactions']}，订单 {c['orders']}")
    click.echo(f"  任务 {c['tasks']}（{len(c['tasks_by_assignee'])} 人），仍待处理 {c.get('open_tasks', 0)}（以前派过、仍然适用：见任务表的“仍待处理”页），"
               f"消息 {c['messages']}，决策记录 {c['decisions']}")
    g = c.get("guards") or {}
    if g:
        from engine.guards import GUARD_LABELS, GUARDS, NOT_AGAIN_GUARDS

        by_guard = g.get("suppressed_by_guard") or {}
        # The guards that stopped something in this run, in their fixed order.
        names = [n for n in GUARDS if by_guard.get(n)] + sorted(n for n in by_guard if n not in GUARDS and by_guard[n])
        # Items issued before (or twice, or replaced, in this run) are no lost work: said apart from the real holds, so 980 "blocked" does not
        # read as 980 customers left out when 890 of them simply were not issued a second time.
        again = [n for n in names if n in NOT_AGAIN_GUARDS]
        held = [n for n in names if n not in NOT_AGAIN_GUARDS]
        line = "  "
        if again:
            line += (f"不再重复派发 {sum(by_guard[n] for n in again)} 项"
                     f"（{'、'.join(f'{GUARD_LABELS.get(n, n)} {by_guard[n]}' for n in again)}）；")
        why = "、".join(f"{GUARD_LABELS.get(n, n)} {by_guard[n]}" for n in held)
        click.echo(line + f"已拦截 {sum(by_guard[n] for n in held)} 项" + (f"（{why}）" if why else "")
                   + f"，改期 {g.get('rescheduled', 0)} 条（免打扰时段）：见 guards.xlsx")
        if g.get("recalled"):  # earlier runs' messages, issued ahead, that must not go out now
            why = "、".join(f"{GUARD_LABELS.get(n, n)} {k}" for n, k in (g.get("recalled_by_guard") or {}).items())
            click.echo(f"  撤回 {g['recalled']} 条此前已排期的消息（{why}）：见 messages/recalls.jsonl 和 guards.xlsx（已撤回） / "
                       f"recalled {g['recalled']} message{'s' * (g['recalled'] != 1)} issued ahead by earlier runs")
    if c["rejects"]:
        click.echo(f"  被拒绝的行 {c['rejects']}：见 {result.folder / 'rejects.xlsx'}")
    click.echo(f"结果在 Results in: {result.folder}")


@main.command()
@click.option("--customers", type=click.IntRange(min=1), default=500, show_default=True, help="How many customers.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed: the same seed gives the same files.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=Path("inbox"), show_default=True, help="Output folder.")
@click.option("--as-of", "as_of", callback=_parse_date, default="2026-11-20", show_default=True,
              help="The date the sample history runs up to.")
@click.option("--interactions-per-customer", type=float, default=10.0, show_default=True)
@click.option("--orders-per-customer", type=float, default=3.0, show_default=True)
@click.option("--clean", is_flag=True, help="No messy cells (by default a few are added, as real exports have).")
def sample(customers: int, seed: int, out: Path, as_of: date, interactions_per_customer: float, orders_per_customer: float, clean: bool) -> None:
    """Write a deterministic, realistic sample export (customers, interactions, orders)."""
    from engine.sample import write_sample

    paths = write_sample(out, customers, seed, as_of=as_of, interactions_per_customer=interactions_per_customer,
                         orders_per_customer=orders_per_customer, messy=not clean)
    for p in paths:
        click.echo(str(p))


from engine.cli_tools import register as _register_tools  # noqa: E402  (after main is defined)
from engine.ledger_cli import ledger_command  # noqa: E402

main.add_command(ledger_command)
_register_tools(main)  # validate, test, explain, diff, verify


_ENDING_AT_ONCE = False  # set by console_main: the process ends with the command
_KEPT_UNTIL_EXIT: list = []


def console_main() -> None:
    """The ``crm-engine`` command: ``main``, then the process ends at once (``os._exit``) once its
    output is flushed. After a large batch run the process holds millions of small objects (kept
    by ``run`` until then), and freeing them one by one then tearing the interpreter down took
    ~1.5 s at 100,000 customers, after the work was done. Every file is closed by then. Under a
    profiler, tracer or debugger (they write their results at exit) the exit is the usual one."""
    global _ENDING_AT_ONCE
    _ENDING_AT_ONCE = sys.getprofile() is None and sys.gettrace() is None
    try:
        main()
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
    if not _ENDING_AT_ONCE:
        raise SystemExit(code)
    if isinstance(code, str):  # sys.exit("message"): printed, status 1
        click.echo(code, err=True)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    console_main()
