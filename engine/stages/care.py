"""Care stage: the dates and facts that personal care needs, computed per customer.

The module only computes facts (features) that need code — lunar birthdays, festival dates, whether a
purchase still waits for its follow-up call, whether a revisit is due by the customer's tier, the
monthly member day, a satisfaction survey after a resolved complaint. The care *rules*
(``policies/care/*.yaml``) turn these features into messages and tasks through the generic rule
machinery, so ops staff decide the actions. Settings (how many days before a birthday, which
festivals, the member day, ...) are in the ``kind: care`` settings file ``policies/care.yaml``.

Greeting windows are whole, also across the year end (a birthday on 2 January is greeted from
30 December): the birthday and festival rules count ``once_per: year`` at the day they greet
(``period_of: next_birthday_date`` / ``festivals_due_date``), not at the run's date, so every day
of one window has the same ledger key and a re-run or the next day never greets twice. Festivals of
the next year wait while one of this year is still due, so the festivals due on one day are all of
one year and ``festivals_due_date`` is the right year for each. See docs/care.md.

Windows over holidays: the batch runs on working days only, so a window that opens on a day without
a run (a weekend, 春节) opens on the last working day before it: a run covers every window that opens
before the next working day of the task calendar (organization.yaml ``task_calendar``). A run on
2026-02-14 (a 调休 Saturday), the last working day before 春节 (15–23 Feb), greets the birthdays up
to 26 Feb (3-day windows opening before 24 Feb). The keys and send_on stay the same, so daily runs
still greet once. The member-day window opens no earlier than its month's 1st (its rules count
once_per: month at the run's month). ``windows_over_holidays: false`` in care.yaml counts calendar days.

Lunar dates come from ``lunar-python`` (MIT). A lunar birthday is recorded as a date whose year,
month and day are the lunar ones; its next solar occurrence on or after the as-of date is found in
the lunar year that contains the as-of date or in the next one (so a 腊月 birthday can fall in
January of the next solar year). Leap months: the birthday is kept in the ordinary month of that
number (a year with 闰六月 celebrates 六月 birthdays in the first, ordinary 六月). Day 30 in a month
that has only 29 days: the month's last day (so lunar 12-30 is always 除夕).
"""
from __future__ import annotations

import calendar as _calendar
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from lunar_python import LunarYear, Solar

from engine.errors import Location, PolicyError
from engine.features import FeatureConfig, purchases
from engine.model import Customer
from engine.policy.schema import Problems, check_keys
from engine.policy.yaml_source import YList, YMap
from engine.stages import CustomerFacts, StageOutput, StageSetup, settings_documents, whole_days
from engine.xlsx_out import Workbook

__all__ = ["FEATURES", "CareSettings", "CareStage", "Festival", "build", "load_care_settings",
           "lunar_to_solar", "next_birthday", "next_lunar_date", "next_run_day", "next_solar_date", "window_open"]

FEATURES: dict[str, tuple[str, str]] = {
    "next_birthday_date": ("date", "下一个生日（公历日期，农历生日已换算；今天生日即今天）"),
    "days_until_birthday": ("number", "距下一个生日的天数（今天生日为 0；无生日为 null）"),
    "birthday_greeting_due": ("bool", "今天在生日祝福窗口内（生日前 greeting_days_before 天至生日当天；开始日不是工作日时提前到之前的最后一个工作日）"),
    "birthday_gift_due": ("bool", "今天在生日贺卡/礼物任务窗口内（生日前 gift_days_before 天至生日当天；开始日不是工作日时同样提前）"),
    "festival_name": ("string", "前瞻期内最近的节日名称（没有则为 null）"),
    "festival_date": ("date", "该节日的公历日期"),
    "days_until_festival": ("number", "距该节日的天数（当天为 0）"),
    "festivals_due": ("list of string", "今天处在问候窗口内的节日名称，如 ['中秋', '国庆']（开始日不是工作日时窗口提前；明年的节日等今年的过后再列）"),
    "festivals_due_date": ("date", "festivals_due 中的节日的公历日期（几个时取最早的；它们总在同一年）：节日规则按它的年份算“每年一次”"),
    "post_purchase_order_id": ("string", "购买后回访窗口内最近一笔订单的编号"),
    "post_purchase_order_date": ("date", "该订单的日期"),
    "post_purchase_followup_needed": ("bool", "窗口内有订单，且订单日之后还没有回访记录"),
    "post_purchase_followup_by": ("date", "购买后回访的最后一天（订单日 + window_days - 1，一周内回访即订单后第 6 天）"),
    "revisit_basis_date": ("date", "定期回访的起算日：最近一次回访/拜访，没有则签约日期，再没有则首次购买日"),
    "next_revisit_date": ("date", "按服务方案回访间隔，下次应回访的日期"),
    "revisit_due": ("bool", "距起算日已达到服务方案的回访间隔（revisit_interval_days）"),
    "next_member_day": ("date", "下一个会员日（今天是会员日即今天）"),
    "days_until_member_day": ("number", "距下一个会员日的天数"),
    "is_member_day": ("bool", "今天在会员日提醒窗口内（会员日前 days_before 天至会员日当天；开始日不是工作日时提前，但不早于当月 1 日）"),
    "survey_due": ("bool", "近几天有已解决的投诉尚无满意度评分：应发满意度调查"),
    "survey_interaction_id": ("string", "待调查的投诉记录编号（最近解决的那条）"),
    "survey_resolved_time": ("datetime", "那条投诉的解决时刻：满意度调查不早于它发出（规则的 send_on）"),
    "unsatisfied_complaint": ("bool", "近期解决的投诉，客户评分仍低（不满意）：应重新处理"),
    "unsatisfied_complaint_id": ("string", "客户不满意的那条投诉的记录编号（最近解决的那条）"),
    "unsatisfied_complaint_score": ("number", "那条投诉的满意度评分（1–5）"),
}
# Tags of the classification policies this module reads, and the kind of value each must hold
# (engine.stages.stage_tag_requirements: the loader checks every rule and table cell that sets them).
# The optional export columns features above are worked out from (without one, the feature is empty or
# false for everyone). Revisit dates have alternatives (last visit, signed date, first order): none here.
_BIRTHDAY = (("customers", "birthday"),)
_RESOLVED_COMPLAINTS = (("interactions", "type"), ("interactions", "resolved_time"), ("interactions", "satisfaction"))
FEATURE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    **dict.fromkeys(("next_birthday_date", "days_until_birthday", "birthday_greeting_due", "birthday_gift_due"), _BIRTHDAY),
    "post_purchase_followup_needed": (("interactions", "type"),),  # followup_types
    **dict.fromkeys(("survey_due", "survey_interaction_id", "unsatisfied_complaint", "unsatisfied_complaint_id",
                     "unsatisfied_complaint_score"), _RESOLVED_COMPLAINTS),
}

READS_TAGS: dict[str, str] = {
    "revisit_interval_days": "days",  # the service plan's revisit interval (_revisit)
}

_TOP_KEYS = ("kind", "id", "description", "windows_over_holidays", "birthday", "festivals", "post_purchase", "revisit",
             "member_day", "survey")
_BIRTHDAY_KEYS = ("greeting_days_before", "gift_days_before")
_FESTIVALS_KEYS = ("look_ahead_days", "greeting_days_before", "days")
_FESTIVAL_KEYS = ("name", "solar", "lunar", "greeting_days_before", "description")
_POST_PURCHASE_KEYS = ("window_days", "followup_types")
_MEMBER_DAY_KEYS = ("day_of_month", "days_before")
_SURVEY_KEYS = ("window_days", "complaint_types", "unsatisfied_at_most", "unsatisfied_window_days")

# Built-in festivals, used when the settings file has no ``festivals: days:`` list.
DEFAULT_FESTIVALS = (
    ("元旦", "solar", 1, 1),
    ("春节", "lunar", 1, 1),
    ("元宵", "lunar", 1, 15),
    ("端午", "lunar", 5, 5),
    ("中秋", "lunar", 8, 15),
    ("国庆", "solar", 10, 1),
)


# --------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _lunar_months(lunar_year: int) -> dict[int, tuple[float, int]]:
    """Ordinary month number → (Julian day of its first day, number of days), for one lunar year.

    Why our own cache: lunar-python keeps only the last LunarYear it built (~40 ms each), and a run
    alternates between two lunar years (this one and the next), so it would rebuild one per customer.
    Leap months (negative numbers in lunar-python) are left out: birthdays and festivals use the
    ordinary month."""
    months = {}
    for m in LunarYear.fromYear(lunar_year).getMonthsInYear():
        if m.getMonth() > 0:
            months[m.getMonth()] = (m.getFirstJulianDay(), m.getDayCount())
    return months


@lru_cache(maxsize=4096)
def lunar_to_solar(lunar_year: int, month: int, day: int) -> date:
    """The solar date of lunar ``month``/``day`` (ordinary month, never the leap one) in ``lunar_year``.

    Day 30 in a 29-day month becomes the month's last day (29)."""
    first_julian_day, day_count = _lunar_months(lunar_year)[month]
    solar = Solar.fromJulianDay(first_julian_day + min(day, day_count) - 1)
    return date(solar.getYear(), solar.getMonth(), solar.getDay())


@lru_cache(maxsize=64)
def _lunar_year_of(day: date) -> int:
    return Solar.fromYmd(day.year, day.month, day.day).getLunar().getYear()


@lru_cache(maxsize=2048)  # a run asks for the same few hundred month/day pairs 100,000 times
def next_lunar_date(month: int, day: int, as_of: date) -> date:
    """The first solar date on or after ``as_of`` that is lunar ``month``/``day``.

    The occurrence in the lunar year containing ``as_of`` may already be past; then the one of the
    next lunar year is the answer (it may be in the next solar year, e.g. a 腊月 birthday in January).
    """
    lunar_year = _lunar_year_of(as_of)
    this_year = lunar_to_solar(lunar_year, month, day)
    return this_year if this_year >= as_of else lunar_to_solar(lunar_year + 1, month, day)


def _solar_in_year(year: int, month: int, day: int) -> date:
    # 2月29日 in a year without it: 2月28日 (the month's last day, like lunar day 30).
    return date(year, month, min(day, _calendar.monthrange(year, month)[1]))


@lru_cache(maxsize=2048)
def next_solar_date(month: int, day: int, as_of: date) -> date:
    this_year = _solar_in_year(as_of.year, month, day)
    return this_year if this_year >= as_of else _solar_in_year(as_of.year + 1, month, day)


def next_birthday(birthday: date, is_lunar: bool, as_of: date) -> date:
    if is_lunar:
        return next_lunar_date(birthday.month, birthday.day, as_of)
    return next_solar_date(birthday.month, birthday.day, as_of)


def window_open(as_of: date, first: date, last: date, next_run: date | None = None) -> bool:
    """Is the window first..last (both included) open on ``as_of``? Not cut at the year end: the rules
    count their period at the day they greet (period_of), so 30 Dec and 2 Jan have the same key.

    ``next_run``: the next day the batch runs (``next_run_day``). A window that opens before it is
    open today already - nobody runs on the days between - so a window opening on a holiday opens on
    the last working day before it. None: every day has a run (calendar days)."""
    return first < (next_run or as_of + timedelta(days=1)) and as_of <= last


def next_run_day(calendar: Any, as_of: date) -> date:
    """The first working day after ``as_of`` on ``calendar`` (engine.calendar.BusinessCalendar).

    A year without holiday data is the calendar's to handle: with ``on_uncovered_year: error`` this
    raises CalendarCoverageError (the run stops with the calendar's message and fix), with ``warn`` or
    ``statutory`` the calendar answers as that setting says and records a warning for the run."""
    return calendar.next_working_time(datetime.combine(as_of + timedelta(days=1), time.min)).date()


# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Festival:
    name: str
    calendar: str  # "solar" or "lunar"
    month: int
    day: int
    greeting_days_before: int

    def next_date(self, as_of: date) -> date:
        if self.calendar == "lunar":
            return next_lunar_date(self.month, self.day, as_of)
        return next_solar_date(self.month, self.day, as_of)


@dataclass
class CareSettings:
    settings_id: str = "care_settings"
    source: str = ""  # file:line of the settings file ("" when defaults are used)
    windows_over_holidays: bool = True  # a window opening on a non-working day opens on the working day before
    birthday_greeting_days: int = 3
    birthday_gift_days: int = 7
    festival_look_ahead_days: int = 30
    festivals: tuple[Festival, ...] = ()
    post_purchase_window_days: int = 7
    followup_types: tuple[str, ...] = ("回访",)
    member_day: int = 18
    member_day_days_before: int = 2
    survey_window_days: int = 3
    complaint_types: tuple[str, ...] = ("投诉",)
    unsatisfied_at_most: int = 2  # a resolved complaint rated this or lower: the customer is still not satisfied
    unsatisfied_window_days: int = 30  # ... if it was resolved within these days
    warnings: list = field(default_factory=list)  # said by validate, not fatal (a festival no rule greets)


def _block(doc: YMap, key: str, allowed: tuple[str, ...], problems: Problems) -> YMap:
    """A sub-block of the settings file (an empty one when absent or not a mapping)."""
    value = doc.get(key)
    if value is not None and check_keys(value, f"'{key}'", allowed, (), problems, doc.value_loc(key)):
        return value
    empty = YMap()
    empty.loc, empty.key_locs, empty.value_locs = doc.value_loc(key), {}, {}
    return empty


def _whole(block: YMap, key: str, default: int, low: int, high: int, problems: Problems) -> int:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or not low <= value <= high:
        quoted = isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and low <= int(value) <= high
        problems.error("bad-value", f"'{key}' 要写 {low} 到 {high} 之间的整数，不能是"
                       + (f"加了引号的文字 \"{value}\"" if quoted else f" '{value}'")
                       + f" / '{key}' must be a whole number from {low} to {high}, not "
                       + (f"the text \"{value}\" (in quotes)" if quoted else f"'{value}'"), block.value_loc(key),
                       fix=f"去掉引号 / remove the quotes: {key}: {value.strip()}" if quoted else None)
        return default
    return int(value)


def _texts(block: YMap, key: str, default: tuple[str, ...], problems: Problems) -> tuple[str, ...]:
    value = block.get(key)
    if value is None:
        return default
    items = list(value) if isinstance(value, (list, YList)) else [value]
    if not items or any(isinstance(v, (dict, list)) or v is None for v in items):
        problems.error("bad-value", f"'{key}' 要写成文字列表，如 [回访, 拜访] / '{key}' must be a list of texts, e.g. [回访, 拜访]",
                       block.value_loc(key))
        return default
    return tuple(str(v).strip() for v in items)


def _month_day(text: Any, where: str, loc: Location, lunar: bool, problems: Problems) -> tuple[int, int] | None:
    """'MM-DD' (also 'M-D', 'M/D', 'M月D日') → (month, day), checked for the calendar."""
    where_zh = "节日 " + where[len("festival "):] if where.startswith("festival ") else where
    raw = str(text).strip().replace("月", "-").replace("日", "").replace("/", "-")
    parts = raw.split("-")
    try:
        month, day = (int(p) for p in parts)
    except ValueError:
        problems.error("bad-date", f"{where_zh}：'{text}' 不是月和日，要写成 MM-DD，如 '08-15' / "
                                   f"{where}: '{text}' is not a month and day; write it as MM-DD, e.g. '08-15'", loc)
        return None
    max_day = 30 if lunar else (_calendar.monthrange(2024, month)[1] if 1 <= month <= 12 else 0)
    if not (1 <= month <= 12 and 1 <= day <= max_day):
        problems.error("bad-date", f"{where_zh}：'{text}' 不是真实的{'农历' if lunar else '公历'}月日 / "
                                   f"{where}: '{text}' is not a real {'lunar' if lunar else 'solar'} month and day", loc,
                       fix="农历的日最大写 30（30 表示当月最后一天）；公历日期按日历写 / "
                           "lunar days go up to 30 (30 means the month's last day); solar dates as in a calendar")
        return None
    return month, day


def _festivals(block: YMap, default_days: int, problems: Problems) -> tuple[Festival, ...]:
    days = block.get("days")
    if days is None:
        return tuple(Festival(n, c, m, d, default_days) for n, c, m, d in DEFAULT_FESTIVALS)
    if not isinstance(days, YList):
        problems.error("not-a-list", "festivals 的 'days:' 下面要写成列表（每条以 '- ' 开头） / "
                                     "festivals 'days:' must be a list (lines starting with '- ')", block.value_loc("days"))
        return ()
    out: list[Festival] = []
    seen: set[str] = set()
    for i, item in enumerate(days):
        loc = days.item_loc(i)
        if not check_keys(item, "a festival", _FESTIVAL_KEYS, ("name",), problems, loc):
            continue
        name = str(item.get("name", "")).strip()
        if name in seen:
            problems.error("duplicate-festival", f"节日 '{name}' 写了两次 / festival '{name}' is declared twice", item.key_loc("name"))
        seen.add(name)
        if ("solar" in item) == ("lunar" in item):
            problems.error("bad-value", f"节日 '{name}' 要写 'solar: MM-DD'（公历）或 'lunar: MM-DD'（农历），只写其中一个 / "
                                        f"festival '{name}' needs exactly one of 'solar: MM-DD' or 'lunar: MM-DD'", item.loc)
            continue
        kind = "lunar" if "lunar" in item else "solar"
        md = _month_day(item.get(kind), f"festival '{name}'", item.value_loc(kind), kind == "lunar", problems)
        lead = _whole(item, "greeting_days_before", default_days, 0, 60, problems)
        if md is not None:
            out.append(Festival(name, kind, md[0], md[1], lead))
    return tuple(out)


def load_care_settings(policyset: Any) -> CareSettings | None:
    """Read the ``kind: care`` settings file. None when the policy folder has neither settings nor care rules.

    Care rules without a settings file get the defaults (documented in docs/care.md)."""
    docs = policyset.documents.get("care", [])
    settings_docs = settings_documents(policyset, "care")
    if not settings_docs:
        return CareSettings(festivals=tuple(Festival(n, c, m, d, 3) for n, c, m, d in DEFAULT_FESTIVALS)) if docs else None
    problems = Problems()
    path, doc = settings_docs[0]
    for other_path, other in settings_docs[1:]:
        problems.error("duplicate-care-settings", f"关怀设置文件只能有一个，{policyset.relpath(path)} 已经是了 / "
                                                  f"only one care settings file is allowed, but {policyset.relpath(path)} already is one",
                       other.loc, fix=f"把 {policyset.relpath(other_path)} 的内容合并到 {policyset.relpath(path)} / "
                                      f"merge {policyset.relpath(other_path)} into {policyset.relpath(path)}")
    check_keys(doc, "the care settings file", _TOP_KEYS, (), problems, doc.loc)
    s = CareSettings(settings_id=str(doc.get("id", "care_settings")), source=str(doc.loc))
    over_holidays = doc.get("windows_over_holidays", True)
    if isinstance(over_holidays, bool):
        s.windows_over_holidays = over_holidays
    else:
        problems.error("bad-value", f"'windows_over_holidays' 要写 true 或 false，不能是 '{over_holidays}' / "
                                    f"'windows_over_holidays' must be true or false, not '{over_holidays}'",
                       doc.value_loc("windows_over_holidays"),
                       fix="true = 窗口开始日不是工作日时提前到之前的最后一个工作日；false = 按自然日 / "
                           "true = a window opening on a non-working day opens on the working day before; false = calendar days")

    birthday = _block(doc, "birthday", _BIRTHDAY_KEYS, problems)
    s.birthday_greeting_days = _whole(birthday, "greeting_days_before", s.birthday_greeting_days, 0, 60, problems)
    s.birthday_gift_days = _whole(birthday, "gift_days_before", s.birthday_gift_days, 0, 60, problems)

    festivals = _block(doc, "festivals", _FESTIVALS_KEYS, problems)
    s.festival_look_ahead_days = _whole(festivals, "look_ahead_days", s.festival_look_ahead_days, 0, 366, problems)
    default_days = _whole(festivals, "greeting_days_before", 3, 0, 60, problems)
    s.festivals = _festivals(festivals, default_days, problems)

    post = _block(doc, "post_purchase", _POST_PURCHASE_KEYS, problems)
    s.post_purchase_window_days = _whole(post, "window_days", s.post_purchase_window_days, 1, 366, problems)
    s.followup_types = _texts(post, "followup_types", s.followup_types, problems)

    member = _block(doc, "member_day", _MEMBER_DAY_KEYS, problems)
    # Day 1..28 so every month has it; the reminder window stays inside the month (see window_open).
    s.member_day = _whole(member, "day_of_month", s.member_day, 1, 28, problems)
    s.member_day_days_before = _whole(member, "days_before", s.member_day_days_before, 0, 27, problems)
    if s.member_day_days_before >= s.member_day:
        problems.error("bad-value", f"member_day 的 days_before（{s.member_day_days_before}）要小于 day_of_month"
                       f"（{s.member_day}）：提醒要在会员日当月开始 / member_day days_before ({s.member_day_days_before}) "
                       f"must be smaller than day_of_month ({s.member_day}): the reminder must start in the member day's own month",
                       member.value_loc("days_before"))

    survey = _block(doc, "survey", _SURVEY_KEYS, problems)
    s.survey_window_days = _whole(survey, "window_days", s.survey_window_days, 1, 31, problems)
    s.complaint_types = _texts(survey, "complaint_types", s.complaint_types, problems)
    s.unsatisfied_at_most = _whole(survey, "unsatisfied_at_most", s.unsatisfied_at_most, 1, 4, problems)
    s.unsatisfied_window_days = _whole(survey, "unsatisfied_window_days", s.unsatisfied_window_days, 1, 366, problems)

    _festivals_without_rules(s.festivals, festivals, policyset, problems)
    if problems.errors:
        raise PolicyError(problems.errors)
    s.warnings = [p for p in problems if p.severity != "error"]
    return s


def _festivals_without_rules(festivals: tuple[Festival, ...], block: Any, policyset: Any, problems: Problems) -> None:
    """A festival declared here that no rule's condition names is never greeted (festivals_due lists it,
    but each festival has its own rule in care/festivals.yaml). The texts the parsed conditions name,
    so any quotes the condition language accepts count (“国庆” as well as '国庆')."""
    from engine import expr  # here, not at the top: only this check needs it

    named = {node.value for rs in policyset.all_rulesets() for rule in rs.rules if rule.condition is not None
             for node in rule.condition.walk() if isinstance(node, expr.Const) and isinstance(node.value, str)}
    days = block.get("days") if isinstance(block, YMap) else None
    for i, festival in enumerate(festivals):
        if festival.name in named:
            continue
        loc = days.item_loc(i) if isinstance(days, YList) and i < len(days) else block.loc if isinstance(block, YMap) else None
        problems.warning("festival-without-rule", f"节日 '{festival.name}' 没有祝福规则：不会给任何人发这个节日的祝福 / "
                                                  f"festival '{festival.name}' has no greeting rule: nobody is greeted for it",
                         loc, fix="在 care/festivals.yaml 里复制一条规则，改它的 id、when: 里的节日名"
                                  f"（'{festival.name}' in festivals_due）和 params.festival / "
                                  "copy a rule in care/festivals.yaml and change its id, the festival's name in "
                                  f"when: ('{festival.name}' in festivals_due) and params.festival")


# --------------------------------------------------------------------------------------------------
# The stage module
# --------------------------------------------------------------------------------------------------


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


class CareStage:
    stage = "care"

    def __init__(self, settings: CareSettings, as_of: date, features: FeatureConfig = FeatureConfig(),
                 calendar: Any = None):
        self.settings = settings
        self.as_of = as_of
        self.features = features  # which orders are purchases
        # The batch runs on the task calendar's working days: windows opening before the next one are
        # open today (window_open). Without a calendar, or with windows_over_holidays: false, every day.
        self.next_run_day = (next_run_day(calendar, as_of) if calendar is not None and settings.windows_over_holidays
                             else as_of + timedelta(days=1))
        self.counts = {name: 0 for name in ("birthday_greeting_due", "birthday_gift_due", "post_purchase_followup_needed",
                                             "revisit_due", "survey_due", "unsatisfied_complaint")}
        # Festivals and the member day are the same for every customer: work them out once per run.
        upcoming = sorted((f.next_date(as_of), f.name, f) for f in settings.festivals)
        due = [(when, name) for when, name, f in upcoming
               if window_open(as_of, when - timedelta(days=f.greeting_days_before), when, self.next_run_day)]
        # The festival rules count their year at festivals_due_date: festivals of next year (元旦 seen
        # from 30 Dec) wait while one of this year is still due (a company day on 31 Dec), so that one
        # date gives every festival due today its own year. Without such a day nothing waits.
        due = [(when, name) for when, name in due if when.year == due[0][0].year]
        self.festivals_due = [name for _, name in due]
        self.festivals_due_date = due[0][0] if due else None
        ahead = [(when, name) for when, name, _ in upcoming if (when - as_of).days <= settings.festival_look_ahead_days]
        self.festival = ahead[0] if ahead else None
        md = date(as_of.year, as_of.month, settings.member_day)
        if md < as_of:
            md = date(as_of.year + (as_of.month == 12), as_of.month % 12 + 1, settings.member_day)
        self.next_member_day = md
        # The window stays in the member day's month (days_before < day_of_month): once_per month counts it
        # once at the run's month. So it opens early over holidays only as far as the month's first day: a
        # reminder issued in the month before would have that month's key, taken by its own member day.
        self.is_member_day = ((as_of.year, as_of.month) == (md.year, md.month)
                              and window_open(as_of, md - timedelta(days=settings.member_day_days_before), md,
                                              self.next_run_day))

    # -- per customer -------------------------------------------------------------------------
    def process(self, facts: CustomerFacts) -> StageOutput:
        f = facts.features
        self._birthday(facts.customer, f)
        f["festival_name"] = self.festival[1] if self.festival else None
        f["festival_date"] = self.festival[0] if self.festival else None
        f["days_until_festival"] = (self.festival[0] - self.as_of).days if self.festival else None
        f["festivals_due"] = list(self.festivals_due)
        f["festivals_due_date"] = self.festivals_due_date
        self._post_purchase(facts, f)
        self._revisit(facts, f)
        f["next_member_day"] = self.next_member_day
        f["days_until_member_day"] = (self.next_member_day - self.as_of).days
        f["is_member_day"] = self.is_member_day
        self._survey(facts, f)
        for name in self.counts:
            if f[name]:
                self.counts[name] += 1
        return StageOutput()

    def _birthday(self, customer, f: dict) -> None:
        if customer.birthday is None:
            f.update(next_birthday_date=None, days_until_birthday=None, birthday_greeting_due=False, birthday_gift_due=False)
            return
        when = next_birthday(customer.birthday, customer.birthday_is_lunar, self.as_of)
        s = self.settings
        f["next_birthday_date"] = when
        f["days_until_birthday"] = (when - self.as_of).days
        f["birthday_greeting_due"] = window_open(self.as_of, when - timedelta(days=s.birthday_greeting_days), when,
                                                 self.next_run_day)
        f["birthday_gift_due"] = window_open(self.as_of, when - timedelta(days=s.birthday_gift_days), when, self.next_run_day)

    def _post_purchase(self, facts: CustomerFacts, f: dict) -> None:
        """The latest order in the window (order day = day 0 .. window_days-1) and whether it was followed up."""
        latest = None
        for order in purchases(facts.orders, self.features):  # no follow-up for a cancelled order or a refund
            if order.date <= self.as_of and (latest is None or order.date >= latest.date):
                latest = order
        if latest is None or (self.as_of - latest.date).days >= self.settings.post_purchase_window_days:
            f.update(post_purchase_order_id=None, post_purchase_order_date=None, post_purchase_followup_needed=False,
                     post_purchase_followup_by=None)
            return
        types = self.settings.followup_types
        # A follow-up on the order day counts: the call may come after the purchase that same day.
        followed = any(i.type in types and latest.date <= _day(i.time) <= self.as_of for i in facts.interactions)
        f["post_purchase_order_id"] = latest.order_id
        f["post_purchase_order_date"] = latest.date
        f["post_purchase_followup_needed"] = not followed
        f["post_purchase_followup_by"] = latest.date + timedelta(days=self.settings.post_purchase_window_days - 1)

    def _revisit(self, facts: CustomerFacts, f: dict) -> None:
        basis = f.get("last_revisit_date") or f.get("signed_date") or f.get("first_order_date")  # as of the run
        # From the service plan (classification). validate rejects anything but a whole number of
        # days; should another value reach here anyway, the customer simply has no revisit interval.
        interval = whole_days(f.get("revisit_interval_days"))
        if basis is None or interval is None or basis > self.as_of:
            f.update(revisit_basis_date=basis, next_revisit_date=None, revisit_due=False)
            return
        f["revisit_basis_date"] = basis
        f["next_revisit_date"] = basis + timedelta(days=interval)
        f["revisit_due"] = (self.as_of - basis).days >= interval

    def _survey(self, facts: CustomerFacts, f: dict) -> None:
        """Resolved complaints, in one pass: the latest without a rating gets a survey; the latest rated
        low is handled again (the seeds: until the customer is satisfied)."""
        s = self.settings
        found = low = None
        for i in facts.interactions:
            if i.type not in s.complaint_types or i.resolved_time is None:
                continue
            resolved = _day(i.resolved_time)
            if i.satisfaction is None:
                # Not cut at the month's end: CARE-SURVEY is keyed by the complaint (key_by:
                # survey_interaction_id), so a window into the next month cannot survey it twice.
                last = resolved + timedelta(days=s.survey_window_days - 1)
                if resolved <= self.as_of <= last and (found is None or i.resolved_time > found.resolved_time):
                    found = i
            elif (i.satisfaction <= s.unsatisfied_at_most and 0 <= (self.as_of - resolved).days < s.unsatisfied_window_days
                    and (low is None or i.resolved_time > low.resolved_time)):
                low = i
        f["survey_due"] = found is not None
        f["survey_interaction_id"] = found.interaction_id if found else None
        # The survey follows the resolution: CARE-SURVEY's send_on keeps it from going out before it
        # (a complaint resolved at 16:00 is not surveyed at the day's 10:00 send time).
        f["survey_resolved_time"] = found.resolved_time if found else None
        f["unsatisfied_complaint"] = low is not None
        f["unsatisfied_complaint_id"] = low.interaction_id if low else None
        f["unsatisfied_complaint_score"] = low.satisfaction if low else None

    def workbooks(self) -> dict[str, Workbook]:
        return {}  # No file of its own: care actions are ordinary tasks and messages.

    def export_state(self) -> dict[str, int]:
        return self.counts

    def absorb(self, state: dict[str, int], customers: dict[str, Customer]) -> None:
        for name, count in state.items():
            self.counts[name] += count

    def manifest_counts(self) -> dict[str, Any]:
        return {"festivals_due": list(self.festivals_due), "is_member_day": self.is_member_day, **self.counts}


def build(setup: StageSetup) -> CareStage | None:
    settings = load_care_settings(setup.policyset)
    if settings is None:
        return None
    # The task calendar (organization.yaml task_calendar): the working days the batch runs on.
    return CareStage(settings, setup.as_of, setup.policyset.features, setup.builder.calendar)
