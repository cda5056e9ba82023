"""Business calendars: working hours, Chinese public holidays and 调休, and SLA time arithmetic.

``policies/calendar.yaml`` names one or more calendars (``standard``, ``hotline_24x7``, ...). The SLA
stage asks a calendar to add a duration such as ``4h`` (four *working* hours) or ``3d`` (three working
days) to the moment a ticket was opened, and how much working time lies between two moments.

Design notes (see docs/calendar.md for the user-facing description):

* All arithmetic runs on integer microseconds since the Unix epoch (UTC), so results are exact and
  time-zone offsets are applied only when a local working period is turned into an instant.
* Each local date is resolved once into its working periods (``_Day``) and cached; whole days are
  then skipped with one subtraction each, and the n-th working date after a date (``3d``) is
  counted once per date and n, which keeps 100,000 SLA computations fast.
* Public holidays and adjusted working days (调休) come from ``declared_holidays`` in the file when it
  declares the year, else from the ``chinesecalendar`` package. A year covered by neither raises
  ``CalendarCoverageError``; with ``on_uncovered_year: statutory`` it uses the statutory holidays
  the law fixes (``holidays`` package) without that year's 调休, with ``warn`` the weekly schedule
  only, and records a warning either way - never a silent wrong answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import chinese_calendar
import yaml

from engine.errors import WARNING, Location, PolicyError, Problem, decode_utf8

__all__ = [
    "BusinessCalendar",
    "CalendarCoverageError",
    "DayInfo",
    "DeclaredYear",
    "Duration",
    "coverage_warnings",
    "first_stopping_day",
    "load_calendars",
    "parse_duration",
    "statutory_holidays",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_ONE_DAY = timedelta(days=1)
_US_PER_SECOND = 1_000_000
_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 86_400_000_000
# A computation that scans this many days without finishing is a broken calendar, not a long SLA.
_MAX_SCAN_DAYS = 3660

Period = tuple[int, int]  # (start minute, end minute) of a local day, 0..1440, start < end


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class CalendarCoverageError(PolicyError):
    """A computation needs public holidays for a year that nobody has told us about."""

    def __init__(self, problem: Problem, year: int, calendar: str):
        super().__init__(problem)
        self.year = year
        self.calendar = calendar


# What a calendar does when a computation reaches a year whose public holidays neither chinesecalendar
# nor calendar.yaml know: stop (error), count weekends only (warn), or count the statutory holidays
# without the year's 调休, which only the State Council's announcement fixes (statutory).
UNCOVERED_YEAR_MODES = ("error", "warn", "statutory")
_STATUTORY_USED = ("; its statutory holidays were used (元旦, 春节, 清明节, 劳动节, 端午节, 中秋节, 国庆节: the days "
                   "the law fixes), without the 调休 days off and make-up working days, which only the announcement fixes")
_STATUTORY_USED_ZH = ("；已按法定节假日计算（元旦、春节、清明节、劳动节、端午节、中秋节、国庆节：法律规定的日子），"
                      "不含只有国务院通知才定下的调休放假和补班")


@lru_cache(maxsize=None)
def statutory_holidays(year: int) -> dict[date, str]:
    """The days off China's holiday law fixes for ``year`` (from the ``holidays`` package, which works
    them out, lunar festivals included, for any year): 元旦 1, 春节 4 (除夕 to 初三), 清明 1, 劳动节 2,
    端午 1, 中秋 1, 国庆 3. Not the 调休 (bridging days off, make-up working days): those exist only
    in the State Council's announcement for the year."""
    import holidays  # only needed for a year chinesecalendar does not cover

    return {d: str(name) for d, name in sorted(holidays.China(years=year, observed=False, language="zh_CN").items())}


def _library_years() -> tuple[int, int]:
    """The years chinesecalendar has data for (only used to word messages)."""
    years = [d.year for d in chinese_calendar.holidays]
    return min(years), max(years)


# --------------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------------

ACCEPTED_DURATIONS = (
    "2h, 30m, 3d, 1d4h, 1h30m (working time); 48h wall, 2d wall (clock time); "
    "2小时, 30分钟, 3个工作日, 1个工作日4小时 (working time); 48小时 自然时间, 2天 自然时间 (clock time)"
)

_WALL_MARKER = re.compile(r"\s*(?:wall|自然时间)\s*$")
_DURATION_PART = re.compile(r"\s*(\d+)\s*(个工作日|工作日|个小时|小时|分钟|天|d|h|m)")
# unit text -> (field, allowed for working time, allowed for wall time)
_UNITS = {
    "d": ("d", True, True),
    "个工作日": ("d", True, False),
    "工作日": ("d", True, False),
    "天": ("d", False, True),
    "h": ("h", True, True),
    "小时": ("h", True, True),
    "个小时": ("h", True, True),
    "m": ("m", True, True),
    "分钟": ("m", True, True),
}


@dataclass(frozen=True)
class Duration:
    """An SLA target. ``wall=False``: working days + working minutes; ``wall=True``: clock time."""

    days: int = 0
    minutes: int = 0
    wall: bool = False

    def __post_init__(self) -> None:
        if self.days < 0 or self.minutes < 0:
            raise ValueError("a duration cannot be negative")
        if self.days == 0 and self.minutes == 0:
            raise ValueError("a duration must be longer than zero")
        # The text goes on every SLA decision and sla.xlsx row: worked out once (not a field, so
        # equality and hashing are unchanged).
        object.__setattr__(self, "_text", self._format())

    @property
    def wall_timedelta(self) -> timedelta:
        """The clock time a wall duration stands for (a day is 24 hours)."""
        return timedelta(days=self.days, minutes=self.minutes)

    def __str__(self) -> str:
        return self._text

    def _format(self) -> str:
        text = ""
        if self.days:
            text += f"{self.days}d"
        hours, minutes = divmod(self.minutes, 60)
        if hours:
            text += f"{hours}h"
        if minutes:
            text += f"{minutes}m"
        return text + (" wall" if self.wall else "")


def parse_duration(text: str, location: Location | None = None) -> Duration:
    """Read an SLA duration such as ``4h``, ``1d4h``, ``48h wall``, ``3个工作日`` or ``48小时 自然时间``.

    Grammar: one or more ``<integer><unit>`` parts in the order days, hours, minutes (each at most
    once, spaces allowed), optionally followed by ``wall`` / ``自然时间`` for clock time.
    Units: ``d``; ``h`` / ``小时`` / ``个小时``; ``m`` / ``分钟``; ``个工作日`` / ``工作日`` (working days
    only); ``天`` (only with ``自然时间``, because "3天" alone is ambiguous).
    """
    where = location or Location()

    def fail(reason_zh: str, reason: str) -> PolicyError:
        return PolicyError(
            Problem(
                code="bad-duration",
                message=f"时长 {text!r} 看不懂：{reason_zh} / cannot read the duration {text!r}: {reason}",
                location=where,
                fix=f"写成下面的一种 / write it in one of these forms: {ACCEPTED_DURATIONS}",
            )
        )

    if not isinstance(text, str):
        raise fail("应该是文字", f"expected text, got {type(text).__name__}")
    body = text.strip().lower()
    wall = False
    marker = _WALL_MARKER.search(body)
    if marker:
        wall = True
        body = body[: marker.start()]
    if not body.strip():
        raise fail("没有写数量", "no amount given")

    values = {"d": 0, "h": 0, "m": 0}
    seen: list[str] = []
    position = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        position = match.end()
        unit = match.group(2)
        slot, for_working, for_wall = _UNITS[unit]
        if wall and not for_wall:
            raise fail(f"'{unit}' 指工作日，不能和自然时间一起用", f"'{unit}' means working days and cannot be combined with clock time")
        if not wall and not for_working:
            raise fail(
                f"'{unit}' 不明确：工作日写 '个工作日'，自然日在后面加 '自然时间'",
                f"'{unit}' is ambiguous: write '个工作日' for working days or add '自然时间' for calendar days",
            )
        if slot in seen:
            raise fail(f"单位 '{unit}' 写了两次", f"the unit '{unit}' is given twice")
        if seen and "dhm".index(slot) < "dhm".index(seen[-1]):
            raise fail("要按天、小时、分钟的顺序写", "give days, then hours, then minutes")
        seen.append(slot)
        values[slot] = int(match.group(1))
    if position != len(body.rstrip()) or not seen:
        rest = body[position:].strip() or body.strip()
        raise fail(f"'{rest}' 不是“数量+单位”", f"'{rest}' is not an amount with a unit")

    days, minutes = values["d"], values["h"] * 60 + values["m"]
    if days == 0 and minutes == 0:
        raise fail("时长是零", "the duration is zero")
    return Duration(days=days, minutes=minutes, wall=wall)


# --------------------------------------------------------------------------------------------------
# The calendar
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredYear:
    """Public holidays and adjusted working days of one year, declared in the policy file."""

    year: int
    holidays: dict[date, str] = field(default_factory=dict)  # date -> name
    workdays: dict[date, str] = field(default_factory=dict)  # adjusted working days (调休上班)


@dataclass(frozen=True)
class DayInfo:
    """What a calendar says about one local date (for explanations and the audit trail)."""

    day: date
    periods: tuple[tuple[datetime, datetime], ...]  # aware, in the calendar's time zone
    reason: str  # e.g. "法定节假日：Spring Festival / public holiday: Spring Festival"

    @property
    def is_working_day(self) -> bool:
        return bool(self.periods)

    @property
    def working_time(self) -> timedelta:
        return sum((end - start for start, end in self.periods), timedelta())


@dataclass(frozen=True, slots=True)
class _Day:
    periods: tuple[tuple[int, int], ...]  # (start_us, end_us) instants, ascending
    total: int  # working microseconds in the day
    reason: str


# Why a day has the hours it has (``DayInfo.reason``) when no holiday or company day applies.
_REGULAR_WEEK = "按每周的工作时间 / regular week schedule"


class BusinessCalendar:
    """Working time of one named calendar.

    Naive datetimes are read as local time in the calendar's time zone and results are naive local
    times; aware datetimes are converted, and results are aware, in the calendar's time zone.
    """

    def __init__(
        self,
        name: str,
        *,
        time_zone: str | ZoneInfo,
        weekly_hours: dict[int, tuple[Period, ...]],
        public_holidays: str,
        adjusted_workday_hours: tuple[Period, ...] | None = None,
        closed_days: dict[date, str] | None = None,
        extra_workdays: dict[date, str] | None = None,
        declared_holidays: dict[int, DeclaredYear] | None = None,
        on_uncovered_year: str = "error",
        location: Location | None = None,
        description: str | None = None,
    ):
        if public_holidays not in ("china", "none"):
            raise ValueError("public_holidays must be 'china' or 'none'")
        if on_uncovered_year not in UNCOVERED_YEAR_MODES:
            raise ValueError(f"on_uncovered_year must be one of {', '.join(UNCOVERED_YEAR_MODES)}")
        self.name = name
        self.description = description
        self.tz = time_zone if isinstance(time_zone, ZoneInfo) else ZoneInfo(time_zone)
        self.weekly_hours = {wd: tuple(weekly_hours.get(wd, ())) for wd in range(7)}
        if not any(self.weekly_hours.values()):
            raise ValueError(f"calendar {name!r} has no working hours on any weekday")
        # 调休 and extra working days follow Monday's hours unless told otherwise.
        self.adjusted_workday_hours = tuple(adjusted_workday_hours or self.weekly_hours[0])
        self.public_holidays = public_holidays
        self.closed_days = dict(closed_days or {})
        self.extra_workdays = dict(extra_workdays or {})
        self.declared_holidays = dict(declared_holidays or {})
        self.on_uncovered_year = on_uncovered_year
        self.location = location or Location()
        # Warnings (e.g. "year 2027 not covered") collected while computing; one per year.
        self.warnings: list[Problem] = []
        self._warned_years: set[int] = set()
        self._days: dict[date, _Day] = {}
        # (local date, n) -> the n-th working date after it (``_add_working_days``). Kept only for scans
        # that finished, so every day in between is already in ``_days``: a hit skips nothing that
        # could have raised or warned.
        self._nth_working_day: dict[tuple[date, int], date] = {}

    def __repr__(self) -> str:
        return f"BusinessCalendar({self.name!r}, {self.tz.key})"

    # ---- public API ----------------------------------------------------------------------------

    def is_working_day(self, day: date | datetime) -> bool:
        """True if the date has any working time (a datetime is first converted to local time)."""
        return self._day(self._local_date_of(day)).total > 0

    def day_info(self, day: date | datetime) -> DayInfo:
        """The working periods of a local date and why (holiday, 调休, closed day, ...)."""
        d = self._local_date_of(day)
        info = self._day(d)
        periods = tuple((self._from_us(s, naive=False), self._from_us(e, naive=False)) for s, e in info.periods)
        return DayInfo(day=d, periods=periods, reason=info.reason)

    def last_working_moment(self, day: date, look_back_days: int = 31) -> datetime | None:
        """The end of the last working period on ``day`` or, if it has none (a holiday), on the nearest
        working day before it (within ``look_back_days``); naive local time. ``None`` if none."""
        for back in range(look_back_days + 1):
            info = self._day(day - timedelta(days=back))
            if info.periods:
                return self._from_us(info.periods[-1][1], naive=True)
        return None

    def is_working_time(self, moment: datetime) -> bool:
        """True if the instant lies inside a working period (start included, end excluded)."""
        t = self._to_us(moment)
        return any(s <= t < e for s, e in self._day(self._local_date(t)).periods)

    def next_working_time(self, moment: datetime) -> datetime:
        """The instant itself if it is working time, else the start of the next working period."""
        return self._from_us(self._normalize(self._to_us(moment)), naive=self._is_naive(moment))

    def working_start(self, day: date) -> datetime:
        """The start of the working time on or after ``day``'s midnight: where task due dates are counted
        from for a run of that day (naive local time)."""
        return self.next_working_time(datetime.combine(day, time(0, 0)))

    def add(self, start: datetime, duration: Duration) -> datetime:
        """The deadline ``duration`` after ``start``.

        * working minutes (``4h``): only working time is counted; a start outside working time counts
          from the next working period; when the time runs out exactly at the end of a period the
          result is that end (Friday 17:00 + 4h = Monday 12:00 with 09:00-12:00 mornings).
        * working days (``3d``): from the first working moment at or after ``start``, N working days
          later at the same working-time position in the day - the same clock time when the days
          have the same hours (Tue 10:15 + 1d = Wed 10:15); clamped to the end of a shorter day.
          ``1d4h`` adds the days first, then the hours.
        * wall durations (``48h wall``) ignore the calendar: exactly that much elapsed time.
        """
        if not isinstance(duration, Duration):
            raise TypeError("duration must be a Duration; use parse_duration('4h')")
        t = self._to_us(start)
        if duration.wall:
            t += duration.days * _US_PER_DAY + duration.minutes * _US_PER_MINUTE
        else:
            if duration.days:
                t = self._add_working_days(t, duration.days)
            if duration.minutes:
                t = self._add_working_us(t, duration.minutes * _US_PER_MINUTE)
        return self._from_us(t, naive=self._is_naive(start))

    def business_time_between(self, a: datetime, b: datetime) -> timedelta:
        """Working time between two instants; negative if ``b`` is before ``a``."""
        ta, tb = self._to_us(a), self._to_us(b)
        if tb < ta:
            return -self.business_time_between(b, a)
        return timedelta(microseconds=self._working_us_between(ta, tb))

    def uncovered_years(self, years: Iterable[int]) -> list[int]:
        """Those of ``years`` whose public holidays neither chinesecalendar nor the file know.

        Lets a run warn ahead of time ("declare 2027 before tickets reach it"). Always empty for a
        calendar with ``public_holidays: none``.
        """
        if self.public_holidays != "china":
            return []
        missing = []
        for year in sorted(set(years)):
            if year in self.declared_holidays:
                continue
            try:
                chinese_calendar.get_holiday_detail(date(year, 1, 1))
            except NotImplementedError:
                missing.append(year)
        return missing

    # ---- conversions ---------------------------------------------------------------------------

    @staticmethod
    def _is_naive(moment: datetime) -> bool:
        return moment.tzinfo is None or moment.utcoffset() is None

    def _to_us(self, moment: datetime) -> int:
        if not isinstance(moment, datetime):
            raise TypeError(f"expected a datetime, got {type(moment).__name__}")
        if moment.tzinfo is None:
            # Naive = local time of this calendar. The same as moment.replace(tzinfo=self.tz) - _EPOCH
            # (the zone's offset for that wall time, fold included) without building an aware datetime.
            return (moment - _NAIVE_EPOCH - self.tz.utcoffset(moment)) // _US
        if moment.utcoffset() is None:
            moment = moment.replace(tzinfo=self.tz)
        return (moment - _EPOCH) // _US

    def _from_us(self, t: int, naive: bool) -> datetime:
        # fromtimestamp(seconds, tz) converts through tz.fromutc() like astimezone() does (fold
        # included), at a third of the cost of _EPOCH + timedelta + astimezone; the constructor is
        # twice as fast as replace(). Zones change offset on whole seconds, so the microseconds just add.
        seconds, microseconds = divmod(t, _US_PER_SECOND)
        local = datetime.fromtimestamp(seconds, self.tz)
        return datetime(local.year, local.month, local.day, local.hour, local.minute, local.second, microseconds,
                        None if naive else self.tz, fold=local.fold)

    def _local_date(self, t: int) -> date:
        # Zones change offset on whole seconds, so the whole second holding t has t's local date.
        return datetime.fromtimestamp(t // _US_PER_SECOND, self.tz).date()

    def _local_date_of(self, day: date | datetime) -> date:
        if isinstance(day, datetime):
            return self._local_date(self._to_us(day))
        if isinstance(day, date):
            return day
        raise TypeError(f"expected a date, got {type(day).__name__}")

    def _local_minute_us(self, d: date, minute: int) -> int:
        # Wall-clock arithmetic on an aware datetime, then the offset valid at that wall time.
        wall = datetime(d.year, d.month, d.day, tzinfo=self.tz) + timedelta(minutes=minute)
        return (wall - _EPOCH) // _US

    # ---- one day -------------------------------------------------------------------------------

    def _day(self, d: date) -> _Day:
        cached = self._days.get(d)
        if cached is not None:
            return cached
        minutes, reason = self._schedule(d)
        periods = tuple((self._local_minute_us(d, s), self._local_minute_us(d, e)) for s, e in minutes)
        day = _Day(periods=periods, total=sum(e - s for s, e in periods), reason=reason)
        self._days[d] = day
        return day

    def _schedule(self, d: date) -> tuple[tuple[Period, ...], str]:
        """Working periods (in local minutes) of a date, and the reason. Company days win."""
        if d in self.closed_days:
            return (), f"公司休息日：{self.closed_days[d]} / company closed day: {self.closed_days[d]}"
        if d in self.extra_workdays:
            return self.adjusted_workday_hours, f"公司加班日：{self.extra_workdays[d]} / extra working day: {self.extra_workdays[d]}"
        note = _REGULAR_WEEK
        if self.public_holidays == "china":
            status, name, note = self._national_status(d)
            if status == "holiday":
                return (), f"法定节假日：{name} / public holiday: {name}"
            if status == "workday":
                return self.adjusted_workday_hours, f"调休上班：{name} / adjusted working day (调休): {name}"
        return self.weekly_hours[d.weekday()], note

    def _national_status(self, d: date) -> tuple[str | None, str | None, str]:
        """('holiday' | 'workday' | None, holiday name, note). None = the regular week schedule."""
        declared = self.declared_holidays.get(d.year)
        if declared is not None:  # the policy file wins over the library for a year it declares
            if d in declared.holidays:
                return "holiday", declared.holidays[d], ""
            if d in declared.workdays:
                return "workday", declared.workdays[d], ""
            return None, None, _REGULAR_WEEK
        try:
            on_holiday, name = chinese_calendar.get_holiday_detail(d)
        except NotImplementedError:  # chinesecalendar's way of saying "no data for this year"
            self._uncovered_year(d.year)  # raises, unless this calendar may go on without
            if self.on_uncovered_year == "statutory":
                name = statutory_holidays(d.year).get(d)
                if name is not None:
                    return "holiday", name, ""
                return None, None, (f"按每周的工作时间（{d.year} 年的调休还不知道） / "
                                    f"regular week schedule (调休 of {d.year} not known yet)")
            return None, None, (f"按每周的工作时间（{d.year} 年的节假日不知道） / "
                                f"regular week schedule (public holidays of {d.year} unknown)")
        if name is None:  # an ordinary weekday or weekend
            return None, None, _REGULAR_WEEK
        return ("holiday" if on_holiday else "workday"), name, ""

    def _uncovered_year(self, year: int) -> None:
        first, last = _library_years()
        file = self.location.file or "policies/calendar.yaml"
        message_zh = (f"日历 '{self.name}' 需要 {year} 年的法定节假日，但 chinesecalendar {chinese_calendar.__version__} "
                      f"只有 {first}-{last} 年的，{file} 也没有写 {year} 年的")
        message = (
            f"calendar '{self.name}' needs the public holidays of {year}, but chinesecalendar "
            f"{chinese_calendar.__version__} only knows {first}-{last} and {file} declares none for {year}"
        )
        fix_zh = (f"把国务院 {year} 年的放假通知写进 {file} 的 "
                  f"declared_holidays: {year}: {{holidays: [...], workdays: [...]}}")
        fix = (
            f"add the State Council's {year} holiday announcement to {file} under "
            f"declared_holidays: {year}: {{holidays: [...], workdays: [...]}}"
        )
        if self.on_uncovered_year == "error":
            fix_zh += "，或在这个日历上写 on_uncovered_year: statutory，在那之前按法定节假日（不含调休）计算"
            fix += (", or set on_uncovered_year: statutory on this calendar to use the statutory holidays "
                    "(without 调休) until then")
            raise CalendarCoverageError(
                Problem(code="calendar-year-not-covered", message=f"{message_zh} / {message}", location=self.location,
                        fix=f"{fix_zh} / {fix}"),
                year=year,
                calendar=self.name,
            )
        if year not in self._warned_years:
            self._warned_years.add(year)
            self.warnings.append(
                Problem(
                    code="calendar-year-not-covered",
                    message=message_zh + (_STATUTORY_USED_ZH if self.on_uncovered_year == "statutory" else
                                          "；只按每周的工作时间计算（周末休息，不算节假日）") + " / "
                            + message + (_STATUTORY_USED if self.on_uncovered_year == "statutory" else
                                         "; only the weekly schedule was used (weekends are rest days, holidays ignored)"),
                    location=self.location,
                    severity=WARNING,
                    fix=f"{fix_zh} / {fix}",
                )
            )

    # ---- arithmetic ----------------------------------------------------------------------------

    def _scan_limit_error(self) -> PolicyError:
        return PolicyError(
            Problem(
                code="no-working-time",
                message=f"日历 '{self.name}' 在 {_MAX_SCAN_DAYS} 天里都没有工作时间 / "
                        f"calendar '{self.name}' has no working time in {_MAX_SCAN_DAYS} days",
                location=self.location,
            )
        )

    def _normalize(self, t: int, d: date | None = None) -> int:
        """The first working instant at or after ``t`` (``d``: ``t``'s local date, when known)."""
        if d is None:
            d = self._local_date(t)
        for _ in range(_MAX_SCAN_DAYS):
            for s, e in self._day(d).periods:
                if e > t:
                    return max(s, t)
            d += _ONE_DAY
        raise self._scan_limit_error()

    def _add_working_us(self, t: int, remaining: int) -> int:
        d = self._local_date(t)
        for _ in range(_MAX_SCAN_DAYS):
            day = self._day(d)
            if day.total and day.periods[-1][1] > t:
                if day.periods[0][0] >= t and remaining > day.total:
                    remaining -= day.total  # the whole day is used up: skip it in one step
                else:
                    for s, e in day.periods:
                        if e <= t:
                            continue
                        s = max(s, t)
                        if remaining <= e - s:
                            return s + remaining
                        remaining -= e - s
            d += _ONE_DAY
        raise self._scan_limit_error()

    def _add_working_days(self, t: int, days: int) -> int:
        d = self._local_date(t)
        t0 = self._normalize(t, d)
        if t0 != t:  # moved on to a later working period: the local date of that
            d = self._local_date(t0)
        # Working time already elapsed in the start day before t0: the position to keep.
        offset = 0
        for s, e in self._day(d).periods:
            if s >= t0:
                break  # (periods are ascending: none after this one started before t0)
            offset += min(e, t0) - s
        # The days-th working date after d: SLA targets are a few day counts, tickets a few hundred
        # dates, so the day-by-day scan runs once per (date, count).
        target = self._nth_working_day.get((d, days))
        if target is None:
            target, left = d, days
            for _ in range(_MAX_SCAN_DAYS):
                if left == 0:
                    break
                target += _ONE_DAY
                if self._day(target).total:
                    left -= 1
            else:
                raise self._scan_limit_error()
            self._nth_working_day[(d, days)] = target
        periods = self._day(target).periods
        for s, e in periods:
            if offset < e - s:
                return s + offset
            offset -= e - s
        return periods[-1][1]  # the target day is shorter: its end

    def _working_us_between(self, ta: int, tb: int) -> int:
        first, last = self._local_date(ta), self._local_date(tb)
        total = 0
        d = first
        while d <= last:
            day = self._day(d)
            if first < d < last:
                total += day.total  # a day strictly inside the interval counts whole
            else:
                for s, e in day.periods:
                    lo, hi = max(s, ta), min(e, tb)
                    if hi > lo:
                        total += hi - lo
            d += _ONE_DAY
        return total


# --------------------------------------------------------------------------------------------------
# Loading policies/calendar.yaml
# --------------------------------------------------------------------------------------------------

_WEEKDAYS = {
    "mon": 0, "monday": 0, "周一": 0, "星期一": 0,
    "tue": 1, "tuesday": 1, "周二": 1, "星期二": 1,
    "wed": 2, "wednesday": 2, "周三": 2, "星期三": 2,
    "thu": 3, "thursday": 3, "周四": 3, "星期四": 3,
    "fri": 4, "friday": 4, "周五": 4, "星期五": 4,
    "sat": 5, "saturday": 5, "周六": 5, "星期六": 5,
    "sun": 6, "sunday": 6, "周日": 6, "周天": 6, "星期日": 6, "星期天": 6,
}  # fmt: skip
_EVERY_DAY = {"daily", "every day", "everyday", "每天", "每日"}
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY_NAMES_ZH = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_RANGE_SEP = r"\s*(?:-|–|~|～|至|到)\s*"
_TIME_RANGE = re.compile(r"^(\d{1,2})[:：](\d{2})" + _RANGE_SEP + r"(\d{1,2})[:：](\d{2})$")
_DATE = r"(\d{4})-(\d{1,2})-(\d{1,2})"
_DATE_RANGE = re.compile(r"^" + _DATE + r"(?:\s*(?:\.\.|~|～|至|到)\s*" + _DATE + r")?$")
_NULL_TAG = "tag:yaml.org,2002:null"

_TOP_KEYS = ("kind", "description", "calendars", "declared_holidays")
_CALENDAR_KEYS = (
    "description",
    "time_zone",
    "working_hours",
    "adjusted_workday_hours",
    "public_holidays",
    "on_uncovered_year",
    "closed_days",
    "extra_workdays",
)
_YEAR_KEYS = ("source", "holidays", "workdays")
_ENTRY_KEYS = ("dates", "date", "name")


# A run warns this many days ahead that a year without holiday data is coming: SLA deadlines, due
# dates and revisits computed in late autumn already reach into the next year.
COVERAGE_LOOKAHEAD_DAYS = 60


def first_stopping_day(calendar: BusinessCalendar, offsets: Iterable[tuple[Duration, str]],
                       year: int) -> tuple[date, str] | None:
    """The first as-of date from which a deadline of ``offsets`` (duration, what it is: "CH-X due: 10d"),
    counted from the start of that day's working time as task due dates are, needs the public
    holidays of ``year`` (an error-mode calendar then stops the run), and the offset that gets there
    first; None without offsets. About: SLA deadlines count from the interaction's time, and a run
    stops only if some customer gets such a deadline."""
    found: tuple[date, str] | None = None
    for duration, what in offsets:
        day = date(year, 1, 1)
        for _ in range(400):  # back from 1 January while this offset still reaches the year
            before = day - _ONE_DAY
            try:
                calendar.add(calendar.working_start(before), duration)
            except CalendarCoverageError:
                day = before
                continue
            break
        if found is None or day < found[0]:
            found = (day, what)
    return found


def coverage_warnings(calendars: dict[str, BusinessCalendar], as_of: date,
                      days_ahead: int = COVERAGE_LOOKAHEAD_DAYS,
                      offsets: Mapping[str, Iterable[tuple[Duration, str]]] | None = None) -> list[Problem]:
    """A warning per calendar and year, from ``as_of`` to ``days_ahead`` days later, whose public
    holidays neither chinesecalendar nor the file know: said before a run's deadlines reach that
    year (then the run stops, or goes on as ``on_uncovered_year`` says: statutory holidays, or weekends only).
    ``offsets``: calendar name → the policies' due and deadline offsets on it, so that the warning of a
    calendar that stops runs says from about which as-of date on (``first_stopping_day``)."""
    years = range(as_of.year, (as_of + timedelta(days=days_ahead)).year + 1)
    first, last = _library_years()
    out = []
    for name in sorted(calendars):
        calendar = calendars[name]
        for year in calendar.uncovered_years(years):
            file = calendar.location.file or "policies/calendar.yaml"
            then_zh = {"error": "时限或到期日落在这一年的运行会停下",
                       "warn": "这一年里的时限和到期日只把周末算作休息日（on_uncovered_year: warn）",
                       "statutory": "这一年里的时限和到期日按法定节假日计算，不含调休（on_uncovered_year: statutory）"
                       }[calendar.on_uncovered_year]
            then = {"error": "a run whose deadlines or due dates fall in it will stop",
                    "warn": "deadlines and due dates in it will count only weekends as rest days (on_uncovered_year: warn)",
                    "statutory": "deadlines and due dates in it will count its statutory holidays, without 调休 "
                                 "(on_uncovered_year: statutory)"}[calendar.on_uncovered_year]
            stop = first_stopping_day(calendar, (offsets or {}).get(name, ()), year) \
                if calendar.on_uncovered_year == "error" else None
            if stop is not None:
                day, what = stop
                then_zh += f"；按现在的策略，大约从 as-of {day:%Y-%m-%d} 起的运行就会停下（{what} 会落到 {year} 年）"
                then += f"; with these policies, runs from about as-of {day:%Y-%m-%d} on will stop ({what} reaches {year})"
            out.append(Problem(
                code="calendar-year-ahead", severity=WARNING, location=calendar.location,
                message=f"日历 '{name}' 还没有 {year} 年的法定节假日（chinesecalendar {chinese_calendar.__version__} 只有 "
                        f"{first}-{last} 年的，{file} 也没有写 {year} 年的）：{then_zh} / "
                        f"calendar '{name}' has no public holidays for {year} yet (chinesecalendar "
                        f"{chinese_calendar.__version__} knows {first}-{last}, {file} declares none for {year}): {then}",
                fix=f"国务院公布 {year} 年放假安排后，写进 {file} 的 "
                    f"declared_holidays: {year}: {{holidays: [...], workdays: [...]}}"
                    + ("；在那之前，on_uncovered_year: statutory 可以让运行按法定节假日继续"
                       if calendar.on_uncovered_year == "error" else "")
                    + f" / once the State Council announces the {year} holidays, add them to {file} under "
                    f"declared_holidays: {year}: {{holidays: [...], workdays: [...]}}"
                    + ("; until then on_uncovered_year: statutory keeps runs going with the statutory holidays"
                       if calendar.on_uncovered_year == "error" else "")))
    return out


def load_calendars(path: str | Path, display: str | None = None) -> dict[str, BusinessCalendar]:
    """Read ``policies/calendar.yaml``. Every problem found is reported at once as a PolicyError.
    ``display``: the file's name in problems and warnings (a run names policy files relative to the
    policies folder, as ``calendar.yaml``); else the path as given."""
    file = display or str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PolicyError(
            Problem(code="file-not-found", message="日历文件不存在 / the calendar file does not exist", location=Location(file=file))
        ) from None
    except OSError as exc:
        raise PolicyError(
            Problem(code="cannot-read", message=f"日历文件读不出：{exc.strerror} / cannot read the calendar file: {exc.strerror}",
                    location=Location(file=file))
        ) from None
    text = decode_utf8(data, file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file=file, line=mark.line + 1, col=mark.column + 1) if mark else Location(file=file)
        raise PolicyError(
            Problem(code="yaml-syntax", message=f"YAML 格式错误 / YAML syntax error: {exc.problem or exc}", location=where)
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyError(Problem(code="yaml-syntax", message=f"YAML 错误 / YAML error: {exc}", location=Location(file=file))) from None
    return _Reader(file).read(root)


def _what_zh(what: str) -> str:
    """The part of calendar.yaml a problem is about (``what``, as the reader names it in English) for the
    Chinese half of a message: "calendar 'standard'" → 日历 'standard', "holidays of 2027" → 2027 年的 holidays."""
    if what == "the calendar file":
        return "日历文件"
    if what.startswith("calendar '"):
        return "日历 " + what[len("calendar "):]
    if what.startswith("working hours '"):
        return "工作时间 " + what[len("working hours "):]
    if what.startswith("an entry of "):
        return f"{_what_zh(what[len('an entry of '):])} 中的一项"
    key, of, rest = what.partition(" of ")
    if of:
        return f"{rest} 年的 {key}" if rest.isdigit() else f"{_what_zh(rest)} 的 {key}"
    return what


class _Reader:
    """Turns the composed YAML node tree into calendars, collecting problems with their lines."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    # ---- helpers -------------------------------------------------------------------------------

    def loc(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        col = mark.column + 1
        if isinstance(node, yaml.ScalarNode) and node.style in ("'", '"'):
            col += 1  # point at the text, not the quote
        return Location(file=self.file, line=mark.line + 1, col=col)

    def problem(self, code: str, message: str, node: yaml.Node | None, fix: str | None = None) -> None:
        where = self.loc(node) if node is not None else Location(file=self.file)
        self.problems.append(Problem(code=code, message=message, location=where, fix=fix))

    @staticmethod
    def is_null(node: yaml.Node) -> bool:
        return isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG

    def mapping(self, node: yaml.Node, what: str, allowed: tuple[str, ...] | None) -> dict | None:
        """{key text: (key node, value node)}, reporting duplicate and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            self.problem("wrong-type", f"{_what_zh(what)} 要写成若干行 '名称: 值' / {what} must be a block of 'key: value' lines", node)
            return None
        items: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem("wrong-type", f"{_what_zh(what)} 里的名称只能是普通文字 / a key in {what} must be plain text", key_node)
                continue
            key = key_node.value
            if key in items:
                self.problem(
                    "duplicate-key",
                    f"{_what_zh(what)} 里 '{key}' 写了两次（第一次在第 {items[key][0].start_mark.line + 1} 行） / "
                    f"the key '{key}' appears twice in {what} (first on line {items[key][0].start_mark.line + 1})",
                    key_node,
                    fix="删掉其中一个，或把两处合并 / delete or merge one of them",
                )
                continue
            if allowed is not None and key not in allowed:
                self.problem(
                    "unknown-key",
                    f"{_what_zh(what)} 里没有 '{key}' 这一项 / unknown key '{key}' in {what}",
                    key_node,
                    fix="可以是其中之一 / use one of: " + ", ".join(allowed),
                )
                continue
            items[key] = (key_node, value_node)
        return items

    def text(self, node: yaml.Node, what: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or self.is_null(node):
            self.problem("wrong-type", f"{_what_zh(what)} 只能写一个值 / {what} must be a single value", node)
            return None
        return node.value.strip()

    def choice(self, node: yaml.Node, what: str, options: tuple[str, ...]) -> str | None:
        value = self.text(node, what)
        if value is None:
            return None
        if value not in options:
            self.problem("bad-value", f"{_what_zh(what)} 不能是 '{value}' / {what} is '{value}'", node,
                         fix="可以是其中之一 / use one of: " + ", ".join(options))
            return None
        return value

    # ---- the file ------------------------------------------------------------------------------

    def read(self, root: yaml.Node | None) -> dict[str, BusinessCalendar]:
        if root is None:
            raise PolicyError(
                Problem(code="empty-file", message="日历文件是空的 / the calendar file is empty",
                        location=Location(file=self.file, line=1, col=1))
            )
        top = self.mapping(root, "the calendar file", _TOP_KEYS)
        if top is None:
            raise PolicyError(self.problems)
        if "kind" not in top:
            self.problem("missing-key", "文件要以 'kind: calendar' 开头 / the file must start with 'kind: calendar'", root)
        else:
            kind = self.text(top["kind"][1], "kind")
            if kind is not None and kind != "calendar":
                self.problem(
                    "wrong-kind", f"这个文件写的是 'kind: {kind}'，日历文件要写 'kind: calendar' / "
                                  f"this file says 'kind: {kind}' but calendars must say 'kind: calendar'", top["kind"][1]
                )
        declared = self.declared_holidays(top["declared_holidays"][1]) if "declared_holidays" in top else {}

        calendars: dict[str, BusinessCalendar] = {}
        if "calendars" not in top:
            self.problem("missing-key", "文件里没有 'calendars:' 这一块 / the file has no 'calendars:' block", root)
        else:
            block = self.mapping(top["calendars"][1], "calendars", None)
            if block is not None and not block:
                self.problem("missing-key", "'calendars:' 下面一个日历也没有 / 'calendars:' names no calendar", top["calendars"][0])
            for name, (key_node, value_node) in (block or {}).items():
                calendar = self.calendar(name, key_node, value_node, declared)
                if calendar is not None:
                    calendars[name] = calendar
        if self.problems:
            raise PolicyError(self.problems)
        return calendars

    def calendar(
        self, name: str, key_node: yaml.Node, node: yaml.Node, declared: dict[int, DeclaredYear]
    ) -> BusinessCalendar | None:
        before = len(self.problems)
        what = f"calendar '{name}'"
        items = self.mapping(node, what, _CALENDAR_KEYS)
        if items is None:
            return None
        for required in ("time_zone", "working_hours", "public_holidays"):
            if required not in items:
                self.problem("missing-key", f"{_what_zh(what)} 缺少 '{required}:' / {what} has no '{required}:'", key_node)

        tz = None
        if "time_zone" in items:
            tz = self.time_zone(items["time_zone"][1])
        weekly = self.working_hours(items["working_hours"][1], what) if "working_hours" in items else None
        adjusted = None
        if "adjusted_workday_hours" in items:
            adjusted = self.periods(items["adjusted_workday_hours"][1], f"adjusted_workday_hours of {what}")
        public = None
        if "public_holidays" in items:
            public = self.choice(items["public_holidays"][1], "public_holidays", ("china", "none"))
        on_uncovered = "error"
        if "on_uncovered_year" in items:
            on_uncovered = self.choice(items["on_uncovered_year"][1], "on_uncovered_year", UNCOVERED_YEAR_MODES)
        closed = self.day_list(items["closed_days"][1], "closed_days", None) if "closed_days" in items else {}
        extra = self.day_list(items["extra_workdays"][1], "extra_workdays", None) if "extra_workdays" in items else {}
        for d in sorted(set(closed) & set(extra)):
            self.problem(
                "date-conflict", f"{d} 在{_what_zh(what)}里既是停业日又是加班日 / "
                                 f"{d} is both a closed day and an extra working day in {what}", extra[d][1]
            )
        description = None
        if "description" in items:
            description = self.text(items["description"][1], "description")

        if weekly is not None and adjusted is None and not weekly[0] and (public == "china" or extra):
            self.problem(
                "missing-key",
                f"{_what_zh(what)} 周一没有工作时间，所以要写明调休上班日和加班日的工作时间 / "
                f"{what} has no hours on Monday, so it must say which hours apply on adjusted and extra working days",
                key_node,
                fix='加上一行，如 / add e.g. adjusted_workday_hours: ["09:00-12:00", "13:30-18:00"]',
            )
        if len(self.problems) > before or tz is None or weekly is None or public is None or on_uncovered is None:
            return None
        return BusinessCalendar(
            name,
            time_zone=tz,
            weekly_hours=weekly,
            public_holidays=public,
            adjusted_workday_hours=adjusted,
            closed_days={d: n for d, (n, _) in closed.items()},
            extra_workdays={d: n for d, (n, _) in extra.items()},
            declared_holidays=declared,
            on_uncovered_year=on_uncovered,
            location=self.loc(key_node),
            description=description,
        )

    def time_zone(self, node: yaml.Node) -> ZoneInfo | None:
        key = self.text(node, "time_zone")
        if key is None:
            return None
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(
                "bad-time-zone",
                f"没有 '{key}' 这个时区 / unknown time zone '{key}'",
                node,
                fix="写时区名称，如 Asia/Shanghai（不要写 UTC+8 这样的时差） / "
                    "use a time zone name such as Asia/Shanghai (not an offset like UTC+8)",
            )
            return None

    # ---- working hours -------------------------------------------------------------------------

    def working_hours(self, node: yaml.Node, what: str) -> dict[int, tuple[Period, ...]] | None:
        items = self.mapping(node, f"working_hours of {what}", None)
        if items is None:
            return None
        before = len(self.problems)
        weekly: dict[int, tuple[Period, ...]] = {}
        given_by: dict[int, yaml.Node] = {}
        for key, (key_node, value_node) in items.items():
            days = self.weekdays(key, key_node)
            periods = self.periods(value_node, f"working hours '{key}'")
            for wd in days or ():
                if wd in given_by:
                    first = given_by[wd]
                    self.problem(
                        "duplicate-weekday",
                        f"{_DAY_NAMES_ZH[wd]}写了两次：'{first.value}'（第 {first.start_mark.line + 1} 行）和 '{key}' / "
                        f"{_DAY_NAMES[wd]} is given twice: by '{first.value}' (line {first.start_mark.line + 1}) and by '{key}'",
                        key_node,
                        fix="每个星期几只写一次 / give each weekday exactly once",
                    )
                    continue
                given_by[wd] = key_node
                if periods is not None:
                    weekly[wd] = periods
        if len(self.problems) > before:
            return None
        if not any(weekly.values()):
            self.problem("no-working-time", f"{_what_zh(what)} 一周里没有一天有工作时间 / {what} has no working hours on any weekday",
                         node)
            return None
        return weekly

    def weekdays(self, key: str, node: yaml.Node) -> list[int] | None:
        """'mon-fri', '周一至周五', 'sat, sun', 'daily' -> weekday numbers (Monday = 0)."""
        text = key.strip().lower()
        if text in _EVERY_DAY:
            return list(range(7))
        days: list[int] = []
        for part in re.split(r"\s*[,，、]\s*", text):
            ends = re.split(_RANGE_SEP, part)
            unknown = [e for e in ends if e not in _WEEKDAYS]
            if len(ends) > 2 or unknown or not part:
                self.problem(
                    "unknown-weekday",
                    f"'{key}' 里的 '{unknown[0] if unknown else part}' 不是星期几 / "
                    f"'{unknown[0] if unknown else part}' in '{key}' is not a weekday",
                    node,
                    fix="写 周一…周日、周一至周五 这样的范围，或 每天 / "
                        "use mon tue wed thu fri sat sun (or 周一…周日), ranges like mon-fri / 周一至周五, or daily / 每天",
                )
                return None
            first, last = _WEEKDAYS[ends[0]], _WEEKDAYS[ends[-1]]
            if last < first:
                self.problem(
                    "unknown-weekday",
                    f"范围 '{part}' 是倒着写的：这里一周从周一到周日 / "
                    f"the range '{part}' runs backwards; weeks here go from Monday to Sunday",
                    node,
                    fix="把这几天分开写，如 '周六, 周日' 或 '周五, 周六, 周日' / "
                        "write the days separately, e.g. 'sat, sun' or 'fri, sat, sun'",
                )
                return None
            days.extend(range(first, last + 1))
        return days

    def periods(self, node: yaml.Node, what: str) -> tuple[Period, ...] | None:
        """A list of 'HH:MM-HH:MM' texts (or one such text) -> sorted, non-overlapping periods."""
        if self.is_null(node):
            return ()
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        parsed: list[tuple[Period, yaml.Node]] = []
        ok = True
        for item in items:
            period = self.time_range(item, what)
            if period is None:
                ok = False
            else:
                parsed.append((period, item))
        if not ok:
            return None
        parsed.sort(key=lambda p: p[0])
        merged: list[Period] = []
        previous: tuple[Period, yaml.Node] | None = None
        for period, item in parsed:
            if previous is not None and period[0] < previous[0][1]:
                self.problem(
                    "overlapping-periods",
                    f"{_what_zh(what)} 里 '{item.value}' 和 '{previous[1].value}' 重叠了 / "
                    f"in {what}, '{item.value}' overlaps '{previous[1].value}'",
                    item,
                    fix="让时间段不重叠，如 09:00-12:00 和 13:30-18:00 / "
                        "make the periods not overlap, e.g. 09:00-12:00 and 13:30-18:00",
                )
                return None
            if merged and merged[-1][1] == period[0]:
                merged[-1] = (merged[-1][0], period[1])  # touching periods: one longer period
            else:
                merged.append(period)
            previous = (period, item)
        return tuple(merged)

    def time_range(self, node: yaml.Node, what: str) -> Period | None:
        fix = ("时间段写成 'HH:MM-HH:MM'，时间在 00:00 到 24:00 之间，如 '09:00-12:00' / "
               "write a time range as 'HH:MM-HH:MM' with 00:00 to 24:00, e.g. '09:00-12:00'")
        if not isinstance(node, yaml.ScalarNode) or self.is_null(node):
            self.problem("bad-time-range", f"{_what_zh(what)} 要写成 '09:00-12:00' 这样的时间段 / "
                                           f"{what} must list time ranges like '09:00-12:00'", node, fix=fix)
            return None
        text = node.value.strip()
        match = _TIME_RANGE.match(text)
        if not match:
            self.problem("bad-time-range", f"{_what_zh(what)} 里的 '{text}' 不是时间段 / '{text}' in {what} is not a time range",
                         node, fix=fix)
            return None
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        for hour, minute in ((h1, m1), (h2, m2)):
            if hour > 24 or minute > 59 or (hour == 24 and minute != 0):
                self.problem(
                    "bad-time-range", f"{_what_zh(what)} 里的 '{text}'：{hour:02d}:{minute:02d} 不是一天中的时间 / "
                                      f"'{text}' in {what}: {hour:02d}:{minute:02d} is not a time of day", node, fix=fix
                )
                return None
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start >= end:
            self.problem(
                "bad-time-range",
                f"{_what_zh(what)} 里的 '{text}' 结束得比开始早 / '{text}' in {what} ends before it starts",
                node,
                fix="时间段要在同一天内先开始后结束；夜班拆成 '22:00-24:00' 和 '00:00-06:00' / "
                    "a period must end after it starts on the same day; split a night shift into '22:00-24:00' and '00:00-06:00'",
            )
            return None
        return start, end

    # ---- dates ---------------------------------------------------------------------------------

    def declared_holidays(self, node: yaml.Node) -> dict[int, DeclaredYear]:
        if self.is_null(node):
            return {}
        items = self.mapping(node, "declared_holidays", None)
        result: dict[int, DeclaredYear] = {}
        for key, (key_node, value_node) in (items or {}).items():
            if not re.fullmatch(r"\d{4}", key):
                self.problem("bad-value", f"declared_holidays 下的 '{key}' 不是年份 / '{key}' under declared_holidays is not a year",
                             key_node, fix="写年份，如 / write e.g. 2027:")
                continue
            year = int(key)
            block = self.mapping(value_node, f"declared_holidays {year}", _YEAR_KEYS)
            if block is None:
                continue
            if "holidays" not in block:
                self.problem("missing-key", f"declared_holidays {year} 缺少 'holidays:' 列表 / "
                                            f"declared_holidays {year} has no 'holidays:' list", key_node)
                continue
            holidays = self.day_list(block["holidays"][1], f"holidays of {year}", year)
            workdays = self.day_list(block["workdays"][1], f"workdays of {year}", year) if "workdays" in block else {}
            for d in sorted(set(holidays) & set(workdays)):
                self.problem("date-conflict", f"{d} 在 {year} 年既是放假日又是上班日 / "
                                              f"{d} is both a holiday and a working day of {year}", workdays[d][1])
            result[year] = DeclaredYear(
                year=year,
                holidays={d: n for d, (n, _) in holidays.items()},
                workdays={d: n for d, (n, _) in workdays.items()},
            )
        return result

    def day_list(self, node: yaml.Node, what: str, year: int | None) -> dict[date, tuple[str, yaml.Node]]:
        """A list of dates / 'from..to' ranges / {dates: ..., name: ...} -> {date: (name, node)}."""
        if self.is_null(node):
            return {}
        if not isinstance(node, yaml.SequenceNode):
            self.problem("wrong-type", f"{_what_zh(what)} 下面要写成列表（每条以 '- ' 开头） / "
                                       f"{what} must be a list (lines starting with '- ')", node)
            return {}
        default_name = "declared holiday" if year is not None else what.replace("_", " ").rstrip("s")
        result: dict[date, tuple[str, yaml.Node]] = {}
        for item in node.value:
            name = default_name
            dates_node: yaml.Node | None = item
            if isinstance(item, yaml.MappingNode):
                entry = self.mapping(item, f"an entry of {what}", _ENTRY_KEYS)
                if entry is None:
                    continue
                dates_node = (entry.get("dates") or entry.get("date") or (None, None))[1]
                if dates_node is None:
                    self.problem("missing-key", f"{_what_zh(what)} 中的一项缺少 'dates:' / an entry of {what} has no 'dates:'", item)
                    continue
                if "name" in entry:
                    name = self.text(entry["name"][1], "name") or name
            for d in self.date_range(dates_node, what) or ():
                if year is not None and d.year != year:
                    self.problem("bad-date", f"{d} 写在了 {year} 年下面 / {d} is listed under {year}", dates_node,
                                 fix=f"把它移到 {d.year}: 下面 / move it under {d.year}:")
                    break
                result[d] = (name, dates_node)
        return result

    def date_range(self, node: yaml.Node, what: str) -> list[date] | None:
        fix = "日期写成 2027-01-01，日期范围写成 2027-02-06..2027-02-13 / write a date as 2027-01-01 and a range as 2027-02-06..2027-02-13"
        if not isinstance(node, yaml.ScalarNode) or self.is_null(node):
            self.problem("bad-date", f"{_what_zh(what)} 要写成 2027-01-01 这样的日期 / {what} must list dates like 2027-01-01", node,
                         fix=fix)
            return None
        text = node.value.strip()
        match = _DATE_RANGE.match(text)
        if not match:
            self.problem("bad-date", f"{_what_zh(what)} 里的 '{text}' 不是日期或日期范围 / '{text}' in {what} is not a date or a date range",
                         node, fix=fix)
            return None
        numbers = [int(g) if g else None for g in match.groups()]
        try:
            first = date(*numbers[0:3])
            last = date(*numbers[3:6]) if numbers[3] is not None else first
        except ValueError as exc:
            self.problem("bad-date", f"{_what_zh(what)} 里的 '{text}' 不是真实的日期 / '{text}' in {what}: {exc}", node, fix=fix)
            return None
        if last < first or (last - first).days > 366:
            self.problem("bad-date", f"{_what_zh(what)} 里的 '{text}' 不是一年之内从早到晚的日期范围 / "
                                     f"'{text}' in {what} is not a range from an earlier to a later date within a year", node, fix=fix)
            return None
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]
