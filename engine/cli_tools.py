"""Commands for policy editors and auditors: ``validate``, ``test``, ``explain``, ``diff``, ``verify``.

Thin, like every command: parse the options, call the library function, print. The main group
(``engine.cli.main``) registers them with ``register(main)``; ``python -m engine.cli_tools`` runs
them on their own.
"""
from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from engine.errors import EngineError

_FOLDER = click.Path(path_type=Path, file_okay=False)


class OptionError(click.BadParameter):
    """A bad value of one of our options, said Chinese first: click's own frame ("Error: Invalid value
    for '--as-of': ...") is English. ``message``: "中文 / English"."""

    def format_message(self) -> str:
        hint = self.param.get_error_hint(self.ctx) if self.param is not None else "?"
        zh, _, en = self.message.partition(" / ")
        return f"选项 {hint} 的值不对：{zh} / invalid value for {hint}: {en or zh}"

    def show(self, file=None) -> None:
        color = self.ctx.color if self.ctx is not None else None
        if self.ctx is not None:
            click.echo(f"{self.ctx.get_usage()}\n帮助 / help: {self.ctx.command_path} --help\n",
                       file=file, err=True, color=color)
        click.echo(f"错误 / Error: {self.format_message()}", file=file, err=True, color=color)


def parse_as_of(_ctx, _param, value):
    """A date (the end of that day) or an instant such as 2026-11-20T12:00 (to the minute; an
    instant with a UTC offset, 2026-11-20T04:00Z, is read in the policies' time zone by
    ``split_as_of``); default: now."""
    if value is None:
        return None
    text = value.strip().replace(" ", "T")
    try:
        if "T" in text:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.second or moment.microsecond:  # they were dropped without a word: 23:59:59 became 23:59
                raise OptionError(f"'{value}'：时间只写到分钟，如 {moment:%Y-%m-%dT%H:%M} / "
                                         f"'{value}': give the time to the minute, e.g. {moment:%Y-%m-%dT%H:%M}")
            return moment
        return date.fromisoformat(text)
    except ValueError:
        raise OptionError(f"'{value}' 不是 2026-11-20 这样的日期，也不是 2026-11-20T12:00 这样的时间 / "
                                 f"'{value}' is not a date like 2026-11-20 or a time like 2026-11-20T12:00") from None


def existing_inbox(_ctx, _param, value):
    """--inbox must name a folder that exists (click's own message for it is English only)."""
    if value is not None and not Path(value).exists():
        raise OptionError(f"收件箱文件夹 {value} 不存在 / the inbox folder {value} does not exist")
    return value


def policy_time_zone(policies: Path) -> ZoneInfo:
    """The zone of the exports' wall-clock times (columns.yaml ``time_zone``): --as-of and "now" are
    read in it, so a server whose clock runs on UTC still looks at Beijing time."""
    from engine.columns import ColumnsSpec
    from engine.readers import load_columns

    try:
        return ZoneInfo(load_columns(policies / "columns.yaml", display="columns.yaml").time_zone)
    except EngineError:  # a broken columns.yaml: the command reports it itself
        return ZoneInfo(ColumnsSpec.time_zone)


def split_as_of(value: date | datetime | None, policies: Path) -> tuple[date, datetime | None]:
    """(the as-of day, the instant or None for a date alone), as naive wall-clock times in the
    policies' time zone: "now" by default, an instant with a UTC offset converted."""
    if value is None:
        value = datetime.now(policy_time_zone(policies)).replace(second=0, microsecond=0)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(policy_time_zone(policies)).replace(tzinfo=None)
        return value.date(), value
    return value, None


def _fail(exc: EngineError) -> None:
    from engine.validate import format_problem

    click.echo(f"发现 {len(exc.problems)} 个问题 / {len(exc.problems)} problem(s):", err=True)
    for p in exc.problems:
        click.echo(format_problem(p), err=True)
    sys.exit(1)


AS_OF_HELP = "The date looked at (YYYY-MM-DD: the end of that day) or an instant (YYYY-MM-DDTHH:MM). Default: now."


@click.command("validate")
@click.option("--policies", type=_FOLDER, default=Path("policies"), show_default=True, help="Policy folder to check.")
@click.option("--templates", type=_FOLDER, default=None, help="Message templates folder. Default: templates/ beside the policy folder.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one line per problem; json: a list of problems for tools.")
@click.option("--engine", "engine_name", type=click.Choice(["python", "durable"]), default="python", show_default=True,
              help="durable: also report rules the durable_rules backend cannot express.")
@click.option("--as-of", "as_of", callback=parse_as_of, default=None,
              help="The day a run is planned for (default: today): the calendar's coverage of the coming weeks is checked for it.")
@click.option("--outbox", type=_FOLDER, default=None,
              help="The outbox the runs write to: its contact ledger's recent rule ids are checked against the policies "
                   "(a renamed rule without formerly:, a deleted one without retired_rules:), as a run does.")
@click.option("--ledger", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The contact ledger, if not the one guards.yaml names inside --outbox.")
def validate_command(policies: Path, templates: Path | None, fmt: str, engine_name: str, as_of: date | datetime | None,
                     outbox: Path | None, ledger: Path | None) -> None:
    """Check every policy file and decision table without running a batch.

    \b
    One line per problem: where (file:line:col or workbook!Sheet!B7), error or warning, what is
    wrong, [code], and the fix. Exit code 1 if there is an error.
      crm-engine validate --policies policies
      crm-engine validate --policies policies --format json
      crm-engine validate --policies policies --engine durable
      crm-engine validate --policies policies --outbox outbox   # also: rule ids in the contact ledger
    """
    from engine.validate import calendar_ahead_warnings, check_policies, format_problem

    policyset, problems = check_policies(policies, templates, engine_name)
    errors = [p for p in problems if p.severity == "error"]
    if not errors:  # what a run on that day will warn about too (next year's holidays not yet declared)
        problems.extend(calendar_ahead_warnings(policies, split_as_of(as_of, policies)[0], policyset))
        if outbox is not None or ledger is not None:  # what stops a run on that day (engine.former_rules)
            problems.extend(_ledger_problems(policyset, outbox, ledger, split_as_of(as_of, policies)[0]))
        errors = [p for p in problems if p.severity == "error"]
    if fmt == "json":
        click.echo(json.dumps([p.to_dict() for p in problems], ensure_ascii=False, indent=2))
    else:
        for p in problems:
            click.echo(format_problem(p))
        if problems:
            click.echo(f"错误 {len(errors)} 个，警告 {len(problems) - len(errors)} 个 / {len(errors)} error(s), "
                       f"{len(problems) - len(errors)} warning(s)")
        else:
            click.echo("策略检查通过 / policies OK")
    sys.exit(1 if errors else 0)


def _ledger_problems(policyset, outbox: Path | None, ledger: Path | None, day: date) -> list:
    """The rule ids of the contact ledger that would stop a run on ``day`` (``former-rule-not-listed``)."""
    from engine.former_rules import check_former_rules
    from engine.guards import load_guard_policy, resolve_ledger_path
    from engine.run import _ledger_root

    outbox = outbox or Path("outbox")
    try:
        ledger_path = resolve_ledger_path(load_guard_policy(policyset), outbox, ledger)
    except EngineError as exc:  # a mistake in guards.yaml: said as a run says it
        return list(exc.problems)
    return check_former_rules(policyset, ledger_path, day, _ledger_root(ledger_path, outbox))


@click.command("test")
@click.option("--policies", type=_FOLDER, default=Path("policies"), show_default=True, help="Policy folder.")
@click.option("--tests", "tests_dir", type=_FOLDER, default=None, help="Folder of test files. Default: <policies>/tests.")
@click.option("--templates", type=_FOLDER, default=None, help="Message templates folder. Default: templates/ beside the policy folder.")
@click.option("-k", "select", default=None, help="Only cases whose id or file name contains this text.")
@click.option("-v", "--verbose", is_flag=True, help="List passing cases too.")
@click.option("--engine", "engine_name", type=click.Choice(["python", "durable"]), default="python", show_default=True)
def test_command(policies: Path, tests_dir: Path | None, templates: Path | None, select: str | None, verbose: bool,
                 engine_name: str) -> None:
    """Run the policy test cases (policies/tests/*.yaml) and show what differs.

    \b
    Each case is one customer with its orders and interactions, an as-of date, and the expected
    tags, tasks, messages and SLA statuses. The last line lists rules no case exercises.
    Exit code 1 if a case fails.
      crm-engine test --policies policies
      crm-engine test --policies policies -k vt -v       # the cases whose id or file name contains vt
    """
    from engine.policy_tests import format_report, run_policy_tests

    report = run_policy_tests(policies, templates, tests_dir, select, engine_name)
    for line in format_report(report, verbose):
        click.echo(line)
    sys.exit(0 if report.ok else 1)


@click.command("explain")
@click.argument("customer_id")
@click.option("--run", "run_folder", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="A finished run folder (outbox/<run-id>): its inputs, policies, as-of and decision log are used.")
@click.option("--policies", type=_FOLDER, default=None,
              help="Policy folder. Default: policies/; with --run: the run's, or where they are now if they moved.")
@click.option("--inbox", type=_FOLDER, default=None,
              help="Folder with the exports. Default: inbox/; with --run: the run's, or where they are now if they moved.")
@click.option("--as-of", "as_of", callback=parse_as_of, default=None, help=AS_OF_HELP + " (Without --run.)")
@click.option("--templates", type=_FOLDER, default=None,
              help="Message templates folder. Default: templates/ beside the policy folder; with --run: the run's.")
@click.option("--only-fired", is_flag=True, help="Show only the rules that fired.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def explain_command(customer_id: str, run_folder: Path | None, policies: Path | None, inbox: Path | None, as_of,
                    templates: Path | None, only_fired: bool, fmt: str) -> None:
    """Why one customer got each decision: every rule, fired or not, with the values it saw.

    \b
    The customer id is read as in the exports: spaces around it are dropped, full-width Ｃ０００００１ is C000001.
    With --run, --inbox/--policies/--templates say where the run's folders are now if they moved (as for verify).
      crm-engine explain C000001 --policies policies --inbox inbox --as-of 2026-11-20
      crm-engine explain C000001 --run outbox/2026-11-20_3e19bc8e
      crm-engine explain C000001 --run outbox/2026-11-20_3e19bc8e --inbox /archive/inbox
    """
    from engine.explain import explain_from_inputs, explain_from_run, format_explanation

    try:
        if run_folder is not None:
            result = explain_from_run(customer_id, run_folder, inbox, policies, templates)
        else:
            day, moment = split_as_of(as_of, policies or Path("policies"))
            result = explain_from_inputs(customer_id, policies or Path("policies"), inbox or Path("inbox"), day, moment,
                                         templates)
    except EngineError as exc:
        _fail(exc)
        return
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        for line in format_explanation(result, only_fired):
            click.echo(line)


@click.command("diff")
@click.option("--base", required=True, help="The current policies: a folder, or git:<revision> (e.g. git:HEAD~1).")
@click.option("--new", "new", type=_FOLDER, default=Path("policies"), show_default=True, help="The changed policy folder.")
@click.option("--inbox", type=click.Path(path_type=Path, file_okay=False), callback=existing_inbox, default=Path("inbox"),
              show_default=True, help="Folder with the exports both versions run on.")
@click.option("--as-of", "as_of", callback=parse_as_of, default=None, help=AS_OF_HELP)
@click.option("--templates", type=_FOLDER, default=None, help="Templates of the new version. Default: templates/ beside it.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=Path("diff.xlsx"), show_default=True,
              help="Where to write the workbook with every change.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Lines per list in the terminal.")
def diff_command(base: str, new: Path, inbox: Path, as_of, templates: Path | None, out: Path, top: int) -> None:
    """What a policy change does: run both versions on the same inputs and compare.

    \b
    The policy edits (changed files, YAML lines and decision-table cells, old → new, with their rules),
    classification changes (from → to, customers per pair), tasks and messages added and removed,
    SLA targets changed, rule firing counts. Details in diff.xlsx, with the commit a git:<revision>
    named and every compared policy file's sha256 in both versions.
      crm-engine diff --base git:HEAD --new policies --inbox inbox --as-of 2026-11-20
      crm-engine diff --base policies --new policies-draft --inbox inbox --as-of 2026-11-20 --out diff.xlsx
    """
    from engine.diff import format_diff, run_diff, write_diff_workbook

    day, moment = split_as_of(as_of, new)
    try:
        result = run_diff(base, new, inbox, day, moment, templates)
    except EngineError as exc:
        _fail(exc)
        return
    for line in format_diff(result, top):
        click.echo(line)
    write_diff_workbook(out, result)
    click.echo(f"详细结果 details: {out}")


@click.command("verify")
@click.argument("run_folder", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--inbox", type=_FOLDER, default=None, help="Where the run's inputs are now, if they moved.")
@click.option("--policies", type=_FOLDER, default=None, help="Where the run's policies are now, if they moved.")
@click.option("--templates", type=_FOLDER, default=None, help="Where the run's templates are now, if they moved.")
@click.option("--ledger", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where the run's contact ledger is now, if it moved (a copy is used; the ledger is not changed).")
@click.option("--keep", type=_FOLDER, default=None, help="Leave the re-run in this folder (to look at differences).")
def verify_command(run_folder: Path, inbox: Path | None, policies: Path | None, templates: Path | None, ledger: Path | None,
                   keep: Path | None) -> None:
    """Re-run a finished run from its recorded files and confirm the outputs are identical.

    \b
    Checks first that every recorded input, policy and template file is unchanged (sha256), then
    runs again into a temporary folder and compares every output file. Exit code 1 if anything differs.
      crm-engine verify outbox/2026-11-20_3e19bc8e
    """
    from engine.verify import format_verify, verify_run

    try:
        result = verify_run(run_folder, inbox, policies, templates, keep, ledger)
    except EngineError as exc:
        _fail(exc)
        return
    for line in format_verify(result):
        click.echo(line)
    sys.exit(0 if result.identical else 1)


COMMANDS = (validate_command, test_command, explain_command, diff_command, verify_command)


def register(group: click.Group) -> None:
    """Add the commands to the main ``crm-engine`` group (replacing an older ``validate``)."""
    for command in COMMANDS:
        group.add_command(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def tools() -> None:
    """Policy editors' and auditors' commands (also available as crm-engine <command>)."""


register(tools)

if __name__ == "__main__":  # pragma: no cover
    tools()
