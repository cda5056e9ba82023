"""Business calendar: real Chinese holidays, working-time arithmetic, YAML errors with line numbers."""
from __future__ import annotations

import copy
import textwrap
import time
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.calendar import (
    BusinessCalendar,
    CalendarCoverageError,
    Duration,
    coverage_warnings,
    load_calendars,
    parse_duration,
)
from conftest import edit
from engine.errors import WARNING, Location, PolicyError

REPO = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
H = timedelta(hours=1)


@pytest.fixture(scope="module")
def calendars() -> dict[str, BusinessCalendar]:
    return load_calendars(REPO / "policies" / "calendar.yaml")


@pytest.fixture(scope="module")
def standard(calendars) -> BusinessCalendar:
    return calendars["standard"]


def write(tmp_path: Path, text: str, name: str = "calendar.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def company(tmp_path: Path, extra: str = "", declared: str = "", on_uncovered: str = "error") -> BusinessCalendar:
    """A standard-hours calendar with the given extra keys / declared_holidays block."""
    text = f"""
kind: calendar
calendars:
  office:
    time_zone: Asia/Shanghai
    working_hours:
      mon-fri: ["09:00-12:00", "13:30-18:00"]
    public_holidays: china
    on_uncovered_year: {on_uncovered}
{textwrap.indent(textwrap.dedent(extra).strip(), "    ") if extra.strip() else ""}
{textwrap.dedent(declared).strip()}
"""
    return load_calendars(write(tmp_path, text))["office"]


def problem_of(exc: pytest.ExceptionInfo, code: str):
    matches = [p for p in exc.value.problems if p.code == code]
    assert matches, [str(p) for p in exc.value.problems]
    return matches[0]


# --------------------------------------------------------------------------------------------------
# The shipped policies/calendar.yaml
# --------------------------------------------------------------------------------------------------


def test_shipped_file_loads(calendars):
    assert set(calendars) == {"standard", "hotline_24x7"}
    standard = calendars["standard"]
    assert standard.tz.key == "Asia/Shanghai"
    assert standard.weekly_hours[0] == ((9 * 60, 12 * 60), (13 * 60 + 30, 18 * 60))
    assert standard.weekly_hours[5] == () and standard.weekly_hours[6] == ()
    assert calendars["hotline_24x7"].weekly_hours[6] == ((0, 24 * 60),)


# --------------------------------------------------------------------------------------------------
# Working hours arithmetic (standard calendar, ordinary weeks of May 2024)
# --------------------------------------------------------------------------------------------------


def test_friday_1700_plus_4h_is_monday_noon(standard):
    # Fri 17:00-18:00 = 1h, Mon 09:00-12:00 = 3h: time runs out exactly at the end of the morning.
    assert standard.add(datetime(2024, 5, 17, 17, 0), parse_duration("4h")) == datetime(2024, 5, 20, 12, 0)


def test_start_during_lunch_break_counts_from_1330(standard):
    assert standard.add(datetime(2024, 5, 20, 12, 30), parse_duration("2h")) == datetime(2024, 5, 20, 15, 30)


def test_morning_work_continues_after_lunch(standard):
    assert standard.add(datetime(2024, 5, 20, 11, 0), parse_duration("2h")) == datetime(2024, 5, 20, 14, 30)


def test_start_at_night_counts_from_next_morning(standard):
    assert standard.add(datetime(2024, 5, 21, 22, 0), parse_duration("30m")) == datetime(2024, 5, 22, 9, 30)
    assert standard.add(datetime(2024, 5, 22, 6, 0), parse_duration("1h")) == datetime(2024, 5, 22, 10, 0)


def test_start_on_saturday_counts_from_monday(standard):
    assert standard.add(datetime(2024, 5, 18, 10, 0), parse_duration("2小时")) == datetime(2024, 5, 20, 11, 0)


def test_long_duration_skips_whole_days(standard):
    # 20h = Mon 7.5h + Tue 7.5h + Wed 5h (09:00-12:00, 13:30-15:30)
    assert standard.add(datetime(2024, 5, 20, 9, 0), parse_duration("20h")) == datetime(2024, 5, 22, 15, 30)


def test_seconds_are_kept(standard):
    start = datetime(2024, 5, 20, 11, 59, 30, 250)
    assert standard.add(start, parse_duration("1m")) == datetime(2024, 5, 20, 13, 30, 30, 250)


# --------------------------------------------------------------------------------------------------
# Real holidays and 调休 from chinesecalendar
# --------------------------------------------------------------------------------------------------


def test_spring_festival_2024_days(standard):
    assert standard.is_working_day(date(2024, 2, 4))  # Sunday, adjusted working day
    assert not standard.is_working_day(date(2024, 2, 3))  # ordinary Saturday
    for day in range(10, 18):
        assert not standard.is_working_day(date(2024, 2, day))
    assert standard.is_working_day(date(2024, 2, 18))  # Sunday, adjusted working day
    assert standard.day_info(date(2024, 2, 18)).reason == "调休上班：Spring Festival / adjusted working day (调休): Spring Festival"
    assert standard.day_info(date(2024, 2, 12)).reason == "法定节假日：Spring Festival / public holiday: Spring Festival"


def test_spring_festival_2024_deadlines(standard):
    # Fri 02-09 17:00: 1h that day, then the holiday, then Sun 02-18 (调休) 09:00-12:00.
    assert standard.add(datetime(2024, 2, 9, 17, 0), parse_duration("4h")) == datetime(2024, 2, 18, 12, 0)
    # A ticket on the ordinary Saturday before is due on the adjusted working Sunday.
    assert standard.add(datetime(2024, 2, 3, 10, 0), parse_duration("1h")) == datetime(2024, 2, 4, 10, 0)
    # 3 working days from Thu 02-08: Fri 02-09, Sun 02-18, Mon 02-19.
    assert standard.add(datetime(2024, 2, 8, 10, 0), parse_duration("3d")) == datetime(2024, 2, 19, 10, 0)


def test_national_day_2024(standard):
    assert standard.is_working_day(date(2024, 9, 29))  # Sunday, adjusted
    assert not any(standard.is_working_day(date(2024, 10, d)) for d in range(1, 8))
    assert standard.is_working_day(date(2024, 10, 12))  # Saturday, adjusted
    assert not standard.is_working_day(date(2024, 10, 13))
    # 3d across the holiday from Fri 09-27: Sun 09-29, Mon 09-30, Tue 10-08.
    assert standard.add(datetime(2024, 9, 27, 10, 0), parse_duration("3个工作日")) == datetime(2024, 10, 8, 10, 0)
    assert standard.add(datetime(2024, 9, 30, 16, 0), parse_duration("1d")) == datetime(2024, 10, 8, 16, 0)
    # Fri 10-11 17:00 + 4h ends on the adjusted working Saturday.
    assert standard.add(datetime(2024, 10, 11, 17, 0), parse_duration("4h")) == datetime(2024, 10, 12, 12, 0)


def test_spring_festival_2025(standard):
    assert standard.is_working_day(date(2025, 1, 26))  # Sunday, adjusted
    assert not any(standard.is_working_day(date(2025, 1, 28) + timedelta(days=i)) for i in range(8))
    assert standard.is_working_day(date(2025, 2, 8))  # Saturday, adjusted
    # Mon 01-27 16:00 + 8h: 2h that day, then Wed 02-05 09:00-12:00 and 13:30-16:30.
    assert standard.add(datetime(2025, 1, 27, 16, 0), parse_duration("8h")) == datetime(2025, 2, 5, 16, 30)
    assert standard.add(datetime(2025, 1, 27, 14, 0), parse_duration("1d")) == datetime(2025, 2, 5, 14, 0)


def test_business_time_between_across_holiday(standard):
    # Mon 2025-01-27 16:00 -> Wed 2025-02-05 10:00: 2h + 1h, the Spring Festival in between counts nothing.
    assert standard.business_time_between(datetime(2025, 1, 27, 16, 0), datetime(2025, 2, 5, 10, 0)) == 3 * H


# --------------------------------------------------------------------------------------------------
# Business days (Nd)
# --------------------------------------------------------------------------------------------------


def test_days_keep_the_clock_time(standard):
    assert standard.add(datetime(2024, 5, 21, 10, 15), parse_duration("1d")) == datetime(2024, 5, 22, 10, 15)
    # Friday + 1 working day = Monday, same time.
    assert standard.add(datetime(2024, 5, 17, 17, 59), parse_duration("1d")) == datetime(2024, 5, 20, 17, 59)


def test_days_from_outside_working_time_start_at_next_working_moment(standard):
    # Fri 20:00 -> first working moment Mon 09:00 -> one working day later Tue 09:00.
    assert standard.add(datetime(2024, 5, 17, 20, 0), parse_duration("1d")) == datetime(2024, 5, 21, 9, 0)
    # During lunch -> counts from 13:30.
    assert standard.add(datetime(2024, 5, 20, 12, 30), parse_duration("1d")) == datetime(2024, 5, 21, 13, 30)


def test_days_then_hours(standard):
    # Fri 17:00 + 1d = Mon 17:00, + 4h = Mon 17:00-18:00 and Tue 09:00-12:00.
    assert standard.add(datetime(2024, 5, 17, 17, 0), parse_duration("1d4h")) == datetime(2024, 5, 21, 12, 0)


def test_days_clamp_to_a_shorter_day(tmp_path):
    path = write(
        tmp_path,
        """
        kind: calendar
        calendars:
          short_friday:
            time_zone: Asia/Shanghai
            working_hours:
              mon-thu: ["09:00-18:00"]
              fri: ["09:00-15:00"]
            public_holidays: none
        """,
    )
    cal = load_calendars(path)["short_friday"]
    assert cal.add(datetime(2024, 5, 16, 17, 0), parse_duration("1d")) == datetime(2024, 5, 17, 15, 0)
    assert cal.add(datetime(2024, 5, 16, 11, 0), parse_duration("1d")) == datetime(2024, 5, 17, 11, 0)


# --------------------------------------------------------------------------------------------------
# Company days declared in the file
# --------------------------------------------------------------------------------------------------


def test_company_closed_day(tmp_path):
    cal = company(tmp_path, extra="closed_days:\n  - {dates: 2024-05-22, name: 公司年会}")
    assert not cal.is_working_day(date(2024, 5, 22))
    assert cal.day_info(date(2024, 5, 22)).reason == "公司休息日：公司年会 / company closed day: 公司年会"
    # Tue 17:00: 1h, Wednesday closed, Thu 09:00-10:00.
    assert cal.add(datetime(2024, 5, 21, 17, 0), parse_duration("2h")) == datetime(2024, 5, 23, 10, 0)


def test_closed_day_range_and_extra_working_day(tmp_path):
    cal = company(
        tmp_path,
        extra="""
        closed_days:
          - 2024-05-27..2024-05-28
        extra_workdays:
          - {dates: 2024-05-25, name: 年会补班}
        """,
    )
    assert cal.is_working_day(date(2024, 5, 25))  # a Saturday
    assert cal.day_info(date(2024, 5, 25)).reason == "公司加班日：年会补班 / extra working day: 年会补班"
    assert cal.add(datetime(2024, 5, 24, 17, 0), parse_duration("2h")) == datetime(2024, 5, 25, 10, 0)
    assert not cal.is_working_day(date(2024, 5, 27)) and not cal.is_working_day(date(2024, 5, 28))
    assert cal.add(datetime(2024, 5, 25, 17, 0), parse_duration("2h")) == datetime(2024, 5, 29, 10, 0)


# --------------------------------------------------------------------------------------------------
# Wall-clock durations and elapsed working time
# --------------------------------------------------------------------------------------------------


def test_wall_durations_ignore_the_calendar(standard):
    start = datetime(2024, 5, 17, 17, 0)
    assert standard.add(start, parse_duration("48h wall")) == datetime(2024, 5, 19, 17, 0)
    assert standard.add(start, parse_duration("2d wall")) == datetime(2024, 5, 19, 17, 0)
    assert standard.add(start, parse_duration("48小时 自然时间")) == datetime(2024, 5, 19, 17, 0)
    # Even right into the Spring Festival.
    assert standard.add(datetime(2024, 2, 9, 20, 0), parse_duration("2天 自然时间")) == datetime(2024, 2, 11, 20, 0)


def test_business_time_between_across_weekend(standard):
    fri, mon = datetime(2024, 5, 17, 16, 0), datetime(2024, 5, 20, 10, 0)
    assert standard.business_time_between(fri, mon) == 3 * H  # Fri 16-18, Mon 09-10
    assert standard.business_time_between(mon, fri) == -3 * H
    assert standard.business_time_between(fri, fri) == timedelta(0)
    assert standard.business_time_between(datetime(2024, 5, 13, 9), datetime(2024, 5, 17, 18)) == 37.5 * H
    # Within the lunch break nothing elapses.
    assert standard.business_time_between(datetime(2024, 5, 20, 12), datetime(2024, 5, 20, 13, 30)) == timedelta(0)


def test_hotline_works_through_holidays_and_midnight(calendars):
    hotline = calendars["hotline_24x7"]
    assert hotline.add(datetime(2024, 2, 10, 10, 0), parse_duration("4h")) == datetime(2024, 2, 10, 14, 0)
    assert hotline.add(datetime(2024, 2, 10, 23, 0), parse_duration("2h")) == datetime(2024, 2, 11, 1, 0)
    assert hotline.add(datetime(2024, 2, 10, 23, 0), parse_duration("1d")) == datetime(2024, 2, 11, 23, 0)
    assert hotline.business_time_between(datetime(2024, 2, 9), datetime(2024, 2, 12)) == 72 * H
    # No holidays: no coverage check, even far in the future.
    assert hotline.add(datetime(2031, 1, 1, 0, 0), parse_duration("4h")) == datetime(2031, 1, 1, 4, 0)


# --------------------------------------------------------------------------------------------------
# Time zones
# --------------------------------------------------------------------------------------------------


def test_aware_utc_time_is_converted(standard):
    start = datetime(2024, 5, 17, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai, a Friday
    assert standard.is_working_time(start)
    result = standard.add(start, parse_duration("1h"))
    assert result == datetime(2024, 5, 17, 2, 0, tzinfo=timezone.utc)
    assert result.tzinfo == SHANGHAI and result.replace(tzinfo=None) == datetime(2024, 5, 17, 10, 0)
    # 00:30Z is 08:30 in Shanghai: before opening.
    assert standard.add(datetime(2024, 5, 17, 0, 30, tzinfo=timezone.utc), parse_duration("1h")) == datetime(
        2024, 5, 17, 10, 0, tzinfo=SHANGHAI
    )


def test_local_date_decides_the_day(standard):
    # Friday 16:30 UTC is already Saturday 00:30 in Shanghai.
    assert not standard.is_working_day(datetime(2024, 5, 17, 16, 30, tzinfo=timezone.utc))
    assert standard.is_working_day(datetime(2024, 5, 17, 15, 30, tzinfo=timezone.utc))


def test_naive_in_naive_out(standard):
    assert standard.add(datetime(2024, 5, 20, 9, 0), parse_duration("1h")).tzinfo is None
    assert standard.next_working_time(datetime(2024, 5, 18, 9, 0)) == datetime(2024, 5, 20, 9, 0)


def test_daylight_saving_day_has_23_hours(tmp_path):
    path = write(
        tmp_path,
        """
        kind: calendar
        calendars:
          berlin:
            time_zone: Europe/Berlin
            working_hours:
              daily: ["00:00-24:00"]
            public_holidays: none
        """,
    )
    berlin = load_calendars(path)["berlin"]
    assert berlin.business_time_between(datetime(2024, 3, 31), datetime(2024, 4, 1)) == 23 * H
    assert berlin.add(datetime(2024, 3, 31, 0, 0), parse_duration("23h")) == datetime(2024, 4, 1, 0, 0)


# --------------------------------------------------------------------------------------------------
# Years the library does not cover
# --------------------------------------------------------------------------------------------------


def test_uncovered_year_is_an_error(standard):
    with pytest.raises(CalendarCoverageError) as exc:
        standard.add(datetime(2026, 12, 31, 17, 0), parse_duration("4h"))  # needs 2027-01-01
    assert exc.value.year == 2027
    problem = exc.value.problems[0]
    assert problem.code == "calendar-year-not-covered"
    assert "2027" in problem.message and "declared_holidays" in problem.fix
    assert "policies/calendar.yaml" in problem.fix
    assert problem.fix.endswith("or set on_uncovered_year: statutory on this calendar to use the statutory holidays "
                                "(without 调休) until then")
    assert problem.location.file.endswith("calendar.yaml") and problem.location.line is not None
    assert isinstance(exc.value, PolicyError)


def test_year_before_library_is_an_error(standard):
    with pytest.raises(CalendarCoverageError) as exc:
        standard.is_working_day(date(2003, 5, 1))
    assert exc.value.year == 2003


def test_uncovered_years_can_be_checked_ahead(standard, calendars, tmp_path):
    assert standard.uncovered_years([2024, 2026, 2027, 2028]) == [2027, 2028]
    assert calendars["hotline_24x7"].uncovered_years([2027]) == []
    declared = company(tmp_path, declared="declared_holidays:\n  2027:\n    holidays: [2027-01-01]")
    assert declared.uncovered_years([2026, 2027, 2028]) == [2028]


def test_a_year_without_holidays_is_announced_sixty_days_ahead(calendars, tmp_path):
    """Runs warn from 60 days before the new year that it has no holiday data (the shipped file:
    only the standard calendar follows public holidays); nothing once the year is declared."""
    assert coverage_warnings(calendars, date(2026, 11, 1)) == []  # 60 days on is still 2026
    (ahead,) = coverage_warnings(calendars, date(2026, 11, 2))
    file = str(REPO / "policies" / "calendar.yaml")
    assert (ahead.code, ahead.severity, ahead.location.file, ahead.location.line) == ("calendar-year-ahead", WARNING, file, 22)
    assert ahead.message == (f"日历 'standard' 还没有 2027 年的法定节假日（chinesecalendar 1.11.0 只有 2004-2026 年的，{file} "
                             "也没有写 2027 年的）：时限或到期日落在这一年的运行会停下 / "
                             f"calendar 'standard' has no public holidays for 2027 yet (chinesecalendar 1.11.0 knows "
                             f"2004-2026, {file} declares none for 2027): a run whose deadlines or due dates fall in it will stop")
    assert ahead.fix == (f"国务院公布 2027 年放假安排后，写进 {file} 的 declared_holidays: 2027: {{holidays: [...], workdays: [...]}}"
                         "；在那之前，on_uncovered_year: statutory 可以让运行按法定节假日继续 / "
                         f"once the State Council announces the 2027 holidays, add them to {file} under "
                         "declared_holidays: 2027: {holidays: [...], workdays: [...]}; until then "
                         "on_uncovered_year: statutory keeps runs going with the statutory holidays")
    assert [w.message.split(" / ")[1].split(" yet")[0] for w in coverage_warnings(calendars, date(2027, 3, 1))] == [
        "calendar 'standard' has no public holidays for 2027"]

    declared = {"office": company(tmp_path, declared="declared_holidays:\n  2027:\n    holidays: [2027-01-01]")}
    assert coverage_warnings(declared, date(2026, 12, 20)) == []
    (later,) = coverage_warnings(declared, date(2027, 12, 20))
    assert "no public holidays for 2028 yet" in later.message
    warn_mode = {"office": company(tmp_path, on_uncovered="warn")}
    (soft,) = coverage_warnings(warn_mode, date(2026, 12, 20))
    assert soft.message.endswith("deadlines and due dates in it will count only weekends as rest days (on_uncovered_year: warn)")


def test_uncovered_year_warn_mode(tmp_path):
    cal = company(tmp_path, on_uncovered="warn")
    # 2027-01-01 is a Friday: treated as a normal working day, with a warning naming 2027.
    assert cal.add(datetime(2026, 12, 31, 17, 0), parse_duration("4h")) == datetime(2027, 1, 1, 12, 0)
    assert cal.add(datetime(2027, 1, 8, 17, 0), parse_duration("4h")) == datetime(2027, 1, 11, 12, 0)
    assert len(cal.warnings) == 1
    warning = cal.warnings[0]
    assert warning.severity == WARNING and warning.code == "calendar-year-not-covered"
    assert "2027" in warning.message
    assert "按每周的工作时间（2027 年的节假日不知道） / regular week schedule (public holidays of 2027 unknown)" == cal.day_info(date(2027, 1, 1)).reason


def test_statutory_mode_counts_the_holidays_the_law_fixes(tmp_path):
    """on_uncovered_year: statutory — for a year chinesecalendar does not know, the days off China's
    holiday law fixes (lunar ones worked out) are holidays; the year's 调休 are not known, so its
    weekends stay rest days and no make-up working day exists; one warning says so."""
    from engine.calendar import statutory_holidays

    assert statutory_holidays(2027) == {
        date(2027, 1, 1): "元旦", date(2027, 2, 5): "农历除夕", date(2027, 2, 6): "春节", date(2027, 2, 7): "春节",
        date(2027, 2, 8): "春节", date(2027, 4, 5): "清明节", date(2027, 5, 1): "劳动节", date(2027, 5, 2): "劳动节",
        date(2027, 6, 9): "端午节", date(2027, 9, 15): "中秋节", date(2027, 10, 1): "国庆节", date(2027, 10, 2): "国庆节",
        date(2027, 10, 3): "国庆节"}
    cal = company(tmp_path, on_uncovered="statutory")
    # Thursday 2026-12-31 17:00 + 4h: Friday 1 January is 元旦, then the weekend: Monday noon.
    assert cal.add(datetime(2026, 12, 31, 17, 0), parse_duration("4h")) == datetime(2027, 1, 4, 12, 0)
    assert cal.day_info(date(2027, 2, 5)).reason == "法定节假日：农历除夕 / public holiday: 农历除夕"
    assert not cal.is_working_day(date(2027, 2, 8)) and cal.is_working_day(date(2027, 2, 9))  # Tuesday after 春节
    assert cal.day_info(date(2027, 2, 13)).reason == "按每周的工作时间（2027 年的调休还不知道） / regular week schedule (调休 of 2027 not known yet)"
    assert not cal.is_working_day(date(2027, 2, 13))  # a Saturday: a make-up day only the announcement could make
    (warning,) = cal.warnings
    assert warning.code == "calendar-year-not-covered" and warning.severity == WARNING
    assert warning.message.endswith("; its statutory holidays were used (元旦, 春节, 清明节, 劳动节, 端午节, 中秋节, 国庆节: "
                                    "the days the law fixes), without the 调休 days off and make-up working days, "
                                    "which only the announcement fixes")
    (ahead,) = coverage_warnings({"office": cal}, date(2026, 12, 1))
    assert ahead.message.endswith("deadlines and due dates in it will count its statutory holidays, without 调休 "
                                  "(on_uncovered_year: statutory)")
    # A declared year still wins over the statutory days.
    declared = company(tmp_path, on_uncovered="statutory", declared="declared_holidays:\n  2027:\n    holidays: [2027-02-09]")
    assert declared.is_working_day(date(2027, 1, 1)) and not declared.is_working_day(date(2027, 2, 9))
    assert declared.warnings == []


def test_an_unknown_uncovered_year_mode_names_the_choices(tmp_path):
    with pytest.raises(PolicyError) as exc:
        company(tmp_path, on_uncovered="skip")
    assert any("statutory" in str(p) and "warn" in str(p) for p in exc.value.problems), [str(p) for p in exc.value.problems]


def test_declared_year_is_used(tmp_path):
    # Format test only - not the real 2027 schedule.
    cal = company(
        tmp_path,
        declared="""
        declared_holidays:
          2027:
            source: test
            holidays:
              - {dates: 2027-01-01, name: 元旦}
              - 2027-02-06..2027-02-12
            workdays:
              - {dates: 2027-02-13, name: 春节调休}
        """,
    )
    assert cal.add(datetime(2026, 12, 31, 17, 0), parse_duration("4h")) == datetime(2027, 1, 4, 12, 0)
    assert cal.day_info(date(2027, 1, 1)).reason == "法定节假日：元旦 / public holiday: 元旦"
    assert not cal.is_working_day(date(2027, 2, 8))
    assert cal.is_working_day(date(2027, 2, 13))  # Saturday
    assert cal.warnings == []


def test_declared_year_replaces_library_data(tmp_path):
    cal = company(tmp_path, declared="declared_holidays:\n  2025:\n    holidays: [2025-05-20]")
    assert cal.is_working_day(date(2025, 1, 28))  # library's Spring Festival no longer applies
    assert not cal.is_working_day(date(2025, 5, 20))
    assert not cal.is_working_day(date(2025, 1, 26))  # nor its adjusted Sunday


# --------------------------------------------------------------------------------------------------
# YAML errors name the line
# --------------------------------------------------------------------------------------------------


BAD_HOURS = """\
kind: calendar
calendars:
  office:
    time_zone: Asia/Shanghai
    working_hours:
      mon-fri: ["09:00-12:00", "13:30-25:00"]
    public_holidays: china
"""


def test_bad_time_range_names_line_and_column(tmp_path):
    path = write(tmp_path, BAD_HOURS)
    with pytest.raises(PolicyError) as exc:
        load_calendars(path)
    problem = problem_of(exc, "bad-time-range")
    assert problem.location == Location(file=str(path), line=6, col=33)
    assert "25:00" in problem.message


def test_unknown_weekday(tmp_path):
    path = write(tmp_path, BAD_HOURS.replace("mon-fri", "mon-fry").replace("25:00", "18:00"))
    with pytest.raises(PolicyError) as exc:
        load_calendars(path)
    problem = problem_of(exc, "unknown-weekday")
    assert (problem.location.line, problem.location.col) == (6, 7)
    assert "fry" in problem.message


def test_overlapping_periods(tmp_path):
    path = write(tmp_path, BAD_HOURS.replace('"13:30-25:00"', '"11:00-14:00"'))
    with pytest.raises(PolicyError) as exc:
        load_calendars(path)
    problem = problem_of(exc, "overlapping-periods")
    assert (problem.location.line, problem.location.col) == (6, 33)


def test_chinese_weekday_names_and_duplicate_weekday(tmp_path):
    text = BAD_HOURS.replace('mon-fri: ["09:00-12:00", "13:30-25:00"]', '周一至周五: ["09:00-18:00"]\n      星期五: []')
    with pytest.raises(PolicyError) as exc:
        load_calendars(write(tmp_path, text))
    problem = problem_of(exc, "duplicate-weekday")
    assert problem.location.line == 7 and "Friday" in problem.message


def test_many_problems_reported_together(tmp_path):
    path = write(
        tmp_path,
        """\
        kind: calendar
        calendars:
          office:
            time_zone: UTC+8
            working_hours:
              mon-fri: 09:00-18:00
            public_holidays: yes please
            closed_days:
              - 2024-02-30
            colour: blue
        declared_holidays:
          2027:
            holidays:
              - 2026-12-31
        """,
    )
    with pytest.raises(PolicyError) as exc:
        load_calendars(path)
    found = sorted((p.location.line, p.code) for p in exc.value.problems)
    assert found == [
        (4, "bad-time-zone"),  # UTC+8 is not a zone name
        (7, "bad-value"),  # public_holidays must be china / none
        (9, "bad-date"),  # there is no 30 February
        (10, "unknown-key"),  # colour
        (14, "bad-date"),  # a 2026 date under 2027
    ]


def test_yaml_syntax_error_line(tmp_path):
    path = write(tmp_path, 'kind: calendar\ncalendars:\n  office:\n    time_zone: "Asia/Shanghai\n')
    with pytest.raises(PolicyError) as exc:
        load_calendars(path)
    assert exc.value.problems[0].code == "yaml-syntax"
    assert exc.value.problems[0].location.line == 5


def test_duplicate_key_and_wrong_kind(tmp_path):
    text = "kind: rules\ncalendars:\n  office: {}\n  office: {}\n"
    with pytest.raises(PolicyError) as exc:
        load_calendars(write(tmp_path, text))
    assert problem_of(exc, "wrong-kind").location.line == 1
    assert problem_of(exc, "duplicate-key").location.line == 4


def test_missing_keys(tmp_path):
    with pytest.raises(PolicyError) as exc:
        load_calendars(write(tmp_path, "kind: calendar\ncalendars:\n  office:\n    time_zone: Asia/Shanghai\n"))
    messages = [p.message for p in exc.value.problems if p.code == "missing-key"]
    assert any("working_hours" in m for m in messages) and any("public_holidays" in m for m in messages)


def test_night_period_is_rejected(tmp_path):
    path = write(tmp_path, BAD_HOURS.replace('["09:00-12:00", "13:30-25:00"]', '["22:00-06:00"]'))
    with pytest.raises(PolicyError) as exc:
        load_calendars(path)
    assert "ends before it starts" in problem_of(exc, "bad-time-range").message


# --------------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2h", Duration(minutes=120)),
        ("30m", Duration(minutes=30)),
        ("3d", Duration(days=3)),
        ("1d4h", Duration(days=1, minutes=240)),
        ("1d 4h 30m", Duration(days=1, minutes=270)),
        ("1H30M", Duration(minutes=90)),
        ("48h wall", Duration(minutes=48 * 60, wall=True)),
        ("2d wall", Duration(days=2, wall=True)),
        ("2小时", Duration(minutes=120)),
        ("30分钟", Duration(minutes=30)),
        ("3个工作日", Duration(days=3)),
        ("1个工作日4小时", Duration(days=1, minutes=240)),
        ("48小时 自然时间", Duration(minutes=48 * 60, wall=True)),
        ("2天 自然时间", Duration(days=2, wall=True)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


def test_duration_canonical_text():
    assert [str(parse_duration(t)) for t in ("90m", "1d4h", "48小时 自然时间", "3个工作日")] == [
        "1h30m",
        "1d4h",
        "48h wall",
        "3d",
    ]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("3天", "ambiguous"),
        ("3个工作日 自然时间", "cannot be combined"),
        ("0h", "zero"),
        ("1.5h", "not an amount"),
        ("4h 2d", "days, then hours"),
        ("4h4h", "twice"),
        ("", "no amount"),
        ("soon", "not an amount"),
    ],
)
def test_bad_durations(text, reason):
    where = Location(file="policies/sla.yaml", line=12, col=14)
    with pytest.raises(PolicyError) as exc:
        parse_duration(text, where)
    problem = exc.value.problems[0]
    assert problem.code == "bad-duration" and reason in problem.message
    assert repr(text) in problem.message and "48h wall" in problem.fix
    assert problem.location == where


# --------------------------------------------------------------------------------------------------
# Properties and speed
# --------------------------------------------------------------------------------------------------

_starts = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2025, 11, 30))


@settings(max_examples=300, deadline=None)
@given(start=_starts, minutes=st.integers(min_value=1, max_value=60 * 80))
def test_working_time_to_deadline_equals_duration(standard, start, minutes):
    deadline = standard.add(start, Duration(minutes=minutes))
    assert deadline > start
    assert standard.business_time_between(start, deadline) == timedelta(minutes=minutes)


@settings(max_examples=200, deadline=None)
@given(start=_starts, later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5)), days=st.integers(1, 10))
def test_deadlines_never_move_backwards(standard, start, later, days):
    for duration in (Duration(minutes=days * 60), Duration(days=days)):
        assert standard.add(start, duration) <= standard.add(start + later, duration)


def test_hundred_thousand_deadlines_are_fast(standard):
    durations = [parse_duration(t) for t in ("4h", "1d", "3d", "30m", "2d4h")]
    starts = [datetime(2024, 1, 1) + timedelta(minutes=37 * i) for i in range(20_000)]
    began = time.perf_counter()
    for duration in durations:
        for start in starts:
            standard.add(start, duration)
    elapsed = time.perf_counter() - began
    assert elapsed < 20, f"100,000 deadlines took {elapsed:.1f}s"


# --------------------------------------------------------------------------------------------------
# The quick conversions (fromtimestamp / utcoffset) give exactly what plain datetime arithmetic gives
# --------------------------------------------------------------------------------------------------

_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)


class _PlainConversions(BusinessCalendar):
    """The calendar with its instant <-> local time conversions written the plain (slow) way."""

    def _to_us(self, moment: datetime) -> int:
        if self._is_naive(moment):
            moment = moment.replace(tzinfo=self.tz)
        return (moment - _EPOCH_UTC) // _ONE_US

    def _from_us(self, t: int, naive: bool) -> datetime:
        local = (_EPOCH_UTC + timedelta(microseconds=t)).astimezone(self.tz)
        return local.replace(tzinfo=None) if naive else local

    def _local_date(self, t: int) -> date:
        return (_EPOCH_UTC + timedelta(microseconds=t)).astimezone(self.tz).date()


def _plain_twin(calendar: BusinessCalendar) -> BusinessCalendar:
    twin = copy.copy(calendar)
    twin.__class__ = _PlainConversions
    twin._days, twin.warnings, twin._warned_years = {}, [], set()  # its own day cache, built anew
    twin._nth_working_day = {}
    return twin


def _same(a: datetime, b: datetime) -> bool:
    """Equal, and alike in everything that could show later: fold, time zone, offset."""
    return a == b and a.fold == b.fold and a.tzinfo is b.tzinfo and a.utcoffset() == b.utcoffset()


# Zones with daylight saving, 30-minute shifts, changes at midnight, a skipped day (Samoa, 2011-12-30),
# local mean time with odd seconds before 1901, and Shanghai's own daylight saving of 1986-1991.
_ODD_ZONES = ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Pacific/Apia",
              "America/Santiago", "Asia/Kathmandu", "America/St_Johns"]


def _transitions(tz: ZoneInfo, first: datetime, last: datetime) -> list[int]:
    """UTC seconds at which the zone's offset changes (found hourly, then to the second)."""
    found = []
    step = 3600
    t, end = int((first - _EPOCH_UTC).total_seconds()), int((last - _EPOCH_UTC).total_seconds())
    offset = datetime.fromtimestamp(t, timezone.utc).astimezone(tz).utcoffset()
    while t < end:
        nxt = datetime.fromtimestamp(t + step, timezone.utc).astimezone(tz).utcoffset()
        if nxt != offset:
            lo, hi = t, t + step  # the offset at lo differs from the one at hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if datetime.fromtimestamp(mid, timezone.utc).astimezone(tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
            offset = nxt
        t += step
    return found


@pytest.mark.parametrize("zone", _ODD_ZONES)
def test_quick_conversions_equal_plain_ones(zone):
    tz = ZoneInfo(zone)
    quick = BusinessCalendar("quick", time_zone=tz, weekly_hours={0: ((540, 1080),)}, public_holidays="none")
    plain = _plain_twin(quick)
    instants = [int((datetime(1899, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc) - _EPOCH_UTC) // _ONE_US)]
    instants += range(-2_500_000_000_000_000, 2_000_000_000_000_000, 1_319_123_457_111)  # 1890..2033, ~15 days apart
    for year in (1900, 1901, 1940, 1986, 1991, 2011, 2024):
        for second in _transitions(tz, datetime(year, 1, 1, tzinfo=timezone.utc), datetime(year + 1, 1, 1, tzinfo=timezone.utc)):
            us = second * 1_000_000
            instants += [us + k for k in (-1, 0, 1, 999_999, 1_000_000)]
            instants += range(us - 3 * 3600 * 1_000_000, us + 3 * 3600 * 1_000_000, 7 * 60 * 1_000_000 + 13)
    for t in instants:
        assert quick._local_date(t) == plain._local_date(t), t
        for naive in (True, False):
            ours, theirs = quick._from_us(t, naive), plain._from_us(t, naive)
            assert _same(ours, theirs), (t, naive, ours, theirs)
            # ... and back: naive wall times (first and second occurrence, gaps included) and aware ones.
            for moment in (ours, ours.replace(fold=1 - ours.fold)):
                assert quick._to_us(moment) == plain._to_us(moment), (t, moment)
        aware_utc = _EPOCH_UTC + timedelta(microseconds=t)
        assert quick._to_us(aware_utc) == plain._to_us(aware_utc) == t


def test_quick_conversions_take_unknown_offsets_as_local():
    class NoOffset(tzinfo):
        def utcoffset(self, dt):
            return None

    quick = BusinessCalendar("quick", time_zone="Europe/Berlin", weekly_hours={0: ((540, 1080),)}, public_holidays="none")
    moment = datetime(2024, 3, 31, 2, 30, tzinfo=NoOffset())  # no offset: read as Berlin local time (a gap)
    assert quick._to_us(moment) == _plain_twin(quick)._to_us(moment)


def _deadline_cases(calendar: BusinessCalendar, starts: list[datetime]) -> list:
    durations = [parse_duration(t) for t in ("30m", "1h", "2h", "4h", "9h", "1d", "2d", "3d", "1d4h", "48h wall")]
    results = []
    for start in starts:
        for duration in durations:
            results.append(calendar.add(start, duration))
        results.append(calendar.next_working_time(start))
        results.append(calendar.business_time_between(start, start + timedelta(days=3, hours=5)))
        results.append(calendar.is_working_time(start))
    return results


def _assert_same_results(calendar: BusinessCalendar, starts: list[datetime]) -> None:
    ours, theirs = _deadline_cases(calendar, starts), _deadline_cases(_plain_twin(calendar), starts)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert (_same(a, b) if isinstance(a, datetime) else a == b), (a, b)


def test_shipped_calendars_give_the_same_deadlines_as_plain_conversions(calendars):
    # Every 7h13m17s over 2024-2026 (the years chinesecalendar knows), so the time of day drifts:
    # weekends, lunch breaks, Spring Festival and National Day with their adjusted working days,
    # and some starts on period edges.
    step = timedelta(hours=7, minutes=13, seconds=17)
    starts = [datetime(2024, 1, 1) + i * step for i in range((365 + 365 + 350) * 24 * 60 // (7 * 60 + 13))]
    starts += [datetime(2025, 1, 26, 9, 0), datetime(2025, 2, 8, 12, 0), datetime(2025, 9, 30, 18, 0),
               datetime(2025, 10, 11, 13, 30), datetime(2026, 2, 14, 17, 59, 59, 999_999)]
    starts += [s.replace(tzinfo=timezone.utc) for s in starts[::7]]  # aware starts too
    for name in ("standard", "hotline_24x7"):
        _assert_same_results(calendars[name], starts)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "Pacific/Apia"])
def test_daylight_saving_calendars_give_the_same_deadlines_as_plain_conversions(zone):
    calendar = BusinessCalendar(
        "odd", time_zone=zone, public_holidays="none",
        weekly_hours={wd: ((0, 60), (90, 210), (540, 720), (810, 1440)) for wd in range(7)},
    )
    tz = ZoneInfo(zone)
    starts = []
    for year in (2011, 2012, 2024):
        for second in _transitions(tz, datetime(year, 1, 1, tzinfo=timezone.utc), datetime(year + 1, 1, 1, tzinfo=timezone.utc)):
            local = datetime.fromtimestamp(second, tz).replace(tzinfo=None)
            starts += [local + timedelta(minutes=m) for m in range(-26 * 60, 26 * 60, 23)]
    starts += [s.replace(fold=1) for s in starts[::3]]
    assert starts
    _assert_same_results(calendar, starts)


def test_the_year_ahead_warning_says_from_which_run_date_runs_stop(tmp_path: Path, policy_copy: Path):
    """The warning of a calendar that stops runs (on_uncovered_year: error) says from about which as-of
    date, worked out from the longest due/deadline offset of the policies: with the shipped ones a task
    due in 10 working days reaches 2027 from the run of 18 December. Real runs of the sample export
    agree: 17 December runs, 18 December stops. The fix stays what it was."""
    from click.testing import CliRunner

    from engine.cli import main

    def run(as_of: str, policies: Path = REPO / "policies"):
        return CliRunner().invoke(main, ["run", "--policies", str(policies), "--inbox", str(REPO / "inbox"),
                                         "--outbox", str(tmp_path / "out"), "--as-of", as_of])

    early = run("2026-12-01")
    assert early.exit_code == 0, early.output
    [warning] = [line for line in early.output.splitlines() if "[calendar-year-ahead]" in line]
    assert ("时限或到期日落在这一年的运行会停下；按现在的策略，大约从 as-of 2026-12-18 起的运行就会停下"
            "（CL-STRATEGIC-EXEC-MEETING due: 10d 会落到 2027 年） / ") in warning
    assert warning.endswith("a run whose deadlines or due dates fall in it will stop; with these policies, runs from "
                            "about as-of 2026-12-18 on will stop (CL-STRATEGIC-EXEC-MEETING due: 10d reaches 2027) "
                            "[calendar-year-ahead]")
    [fix] = [line for line in early.output.splitlines() if line.strip().startswith("fix: 国务院公布 2027 年放假安排后")]
    assert fix.strip().endswith("until then on_uncovered_year: statutory keeps runs going with the statutory holidays")
    assert run("2026-12-17").exit_code == 0
    stopped = run("2026-12-18")
    assert stopped.exit_code != 0 and "[calendar-year-not-covered]" in stopped.output

    # Shorter due dates: later. validate says the same for its --as-of.
    for path in (policy_copy / "classification" / "actions.yaml", policy_copy / "churn" / "win_back.yaml"):
        edit(path, "due: 10d", "due: 3d")
    checked = CliRunner().invoke(main, ["validate", "--policies", str(policy_copy), "--as-of", "2026-12-01"])
    assert checked.exit_code == 0, checked.output
    assert "大约从 as-of 2026-12-25 起的运行就会停下（CL-PROSPECT-CONVERT due: 5d 会落到 2027 年）" in checked.output
    # A calendar that does not stop runs gives no such date.
    edit(policy_copy / "calendar.yaml", "on_uncovered_year: error", "on_uncovered_year: statutory")
    statutory = CliRunner().invoke(main, ["validate", "--policies", str(policy_copy), "--as-of", "2026-12-01"])
    assert "[calendar-year-ahead]" in statutory.output and "大约从" not in statutory.output


def test_working_day_counts_kept_per_date_give_what_a_fresh_calendar_gives(calendars, tmp_path):
    """``add`` keeps the n-th working date after each date it counted from: every start of a
    fortnight across the National Day and Spring Festival holidays, at every quarter hour, gives on
    the warm calendar what a calendar of its own, with nothing kept, gives."""
    warm = load_calendars(REPO / "policies" / "calendar.yaml")["standard"]
    durations = [parse_duration(text) for text in ("1d", "3d", "2d4h", "10d")]
    for first in (datetime(2025, 9, 26), datetime(2026, 2, 10)):
        for quarter in range(0, 14 * 96, 7):
            start = first + quarter * 15 * timedelta(minutes=1)
            for duration in durations:
                cold = load_calendars(REPO / "policies" / "calendar.yaml")["standard"] if quarter % 91 == 0 else None
                got = warm.add(start, duration)
                assert got == (cold or _plain_twin(warm)).add(start, duration)


def test_a_count_that_failed_is_not_kept(tmp_path):
    """A count reaching a year without holiday data raises each time (nothing kept from the failed
    scan); in warn mode the one warning is still given, and the kept count gives the same date."""
    cal = company(tmp_path)
    for _ in range(2):
        with pytest.raises(CalendarCoverageError):
            cal.add(datetime(2026, 12, 28, 10, 0), parse_duration("5d"))
    assert cal.add(datetime(2026, 12, 28, 10, 0), parse_duration("3d")) == datetime(2026, 12, 31, 10, 0)
    soft = company(tmp_path, on_uncovered="warn")
    assert soft.add(datetime(2026, 12, 28, 10, 0), parse_duration("5d")) == datetime(2027, 1, 4, 10, 0)
    assert soft.add(datetime(2026, 12, 28, 11, 0), parse_duration("5d")) == datetime(2027, 1, 4, 11, 0)
    assert len(soft.warnings) == 1
