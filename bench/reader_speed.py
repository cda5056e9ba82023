"""How much does ``read_inbox`` cost on top of python-calamine itself?

Generates sample exports (``engine.sample.write_sample``) and times, best of N runs:
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


def best_of(n: int, fn, *args):
    best = float("inf")
    result = None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, result


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

    t_cal, cells = best_of(args.repeat, calamine_only, inbox)
    t_read, ds = best_of(args.repeat, read_inbox, inbox, columns)
    rows = len(ds.customers) + len(ds.interactions) + len(ds.orders)
    print(f"rows: {len(ds.customers)} customers, {len(ds.interactions)} interactions, {len(ds.orders)} orders, "
          f"{len(ds.rejects)} rejects ({cells} cells)")
    print(f"calamine only : {t_cal:7.3f}s")
    print(f"read_inbox    : {t_read:7.3f}s  ({rows / t_read:,.0f} rows/s)")
    print(f"ratio         : {t_read / t_cal:.2f}x  (reader overhead {t_read - t_cal:.3f}s, "
          f"{(t_read - t_cal) / rows * 1e6:.2f} us/row)")


if __name__ == "__main__":
    main()
