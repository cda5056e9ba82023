"""How much does ``read_inbox`` cost on top of python-calamine itself?

Generates sample exports (``engine.sample.write_sample``) and times, best of N interleaved runs (wall
clock and this process's CPU time):
  * calamine only: open every workbook and ``to_python()`` every sheet (the floor we cannot beat);
  * ``read_inbox``: the same plus header matching, coercion, rejects, dedupe, sorting.

    .venv/bin/python bench/reader_speed.py [--customers 20000] [--repeat 3] [--messy/--clean]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from python_calamine import CalamineWorkbook  # noqa: E402

from engine.readers import load_columns, read_inbox  # noqa: E402
from engine.sample import write_sample  # noqa: E402


def calamine_only(inbox: Path) -> int:
    cells = 0
    for path in sorted(inbox.glob("*.xlsx")):
        wb = CalamineWorkbook.from_path(str(path))
        for name in wb.sheet_names:
            rows = wb.get_sheet_by_name(name).to_python(skip_empty_area=False)
            cells += sum(map(len, rows))
        wb.close()
    return cells


def timed(fn, *args):
    """(wall seconds, CPU seconds of this process, result). CPU time is the steadier number on a
    machine shared with other jobs."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--interactions-per-customer", type=float, default=10)
    ap.add_argument("--orders-per-customer", type=float, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clean", action="store_true", help="no messy cells (messy is the default)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "data" / "reader_speed")
    args = ap.parse_args()

    inbox = args.out / f"c{args.customers}-{'clean' if args.clean else 'messy'}"
    if not (inbox / "orders.xlsx").exists():
        t0 = time.perf_counter()
        write_sample(inbox, args.customers, seed=1, interactions_per_customer=args.interactions_per_customer,
                     orders_per_customer=args.orders_per_customer, messy=not args.clean)
        print(f"generated {inbox} in {time.perf_counter() - t0:.1f}s")
    columns = load_columns(ROOT / "policies" / "columns.yaml")

    # Interleave the two so that a burst of load from other jobs hits both; keep the best of each.
    cal_wall, cal_cpu, read_wall, read_cpu = [], [], [], []
    for _ in range(args.repeat):
        w, c, cells = timed(calamine_only, inbox)
        cal_wall.append(w)
        cal_cpu.append(c)
        w, c, ds = timed(read_inbox, inbox, columns)
        read_wall.append(w)
        read_cpu.append(c)
    rows = len(ds.customers) + len(ds.interactions) + len(ds.orders)
    print(f"rows: {len(ds.customers)} customers, {len(ds.interactions)} interactions, {len(ds.orders)} orders, "
          f"{len(ds.rejects)} rejects ({cells} cells)")
    for label, cal, read in (("wall", cal_wall, read_wall), ("cpu ", cal_cpu, read_cpu)):
        t_cal, t_read = min(cal), min(read)
        print(f"{label}: calamine only {t_cal:7.3f}s | read_inbox {t_read:7.3f}s ({rows / t_read:,.0f} rows/s) | "
              f"ratio {t_read / t_cal:.2f}x | overhead {t_read - t_cal:.3f}s = {(t_read - t_cal) / rows * 1e6:.2f} us/row")


if __name__ == "__main__":
    main()
