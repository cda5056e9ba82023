"""The end-to-end benchmark: a full ``crm-engine run`` against merely reading the same files.

Generates (once, cached under bench/data/) a scale data set with the sample generator — by default
100,000 customers, 1,000,000 interactions, 300,000 orders — then measures, in one session:

  read    python-calamine opening every workbook and turning every sheet into Python rows
          (the floor: no engine can be faster than reading its input);
  run     the whole ``crm-engine run`` (read, map, coerce, derive, evaluate, render, write), in a
          separate process, with its peak memory (max RSS).

and prints their ratio. Targets (DESIGN.md): run/read <= 1.5, peak memory < 2 GiB.
Both are measured as separate processes, alternating, best of --repeat, so the machine's noise
hits both alike. Results are written to bench/out/results.json.

    .venv/bin/python bench/run_bench.py                  # full scale
    .venv/bin/python bench/run_bench.py --customers 10000 --repeat 1   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

READ_ONLY = """
import sys
from pathlib import Path
from python_calamine import CalamineWorkbook
cells = 0
for path in sorted(Path(sys.argv[1]).glob("*.xlsx")):
    wb = CalamineWorkbook.from_path(str(path))
    for name in wb.sheet_names:
        rows = wb.get_sheet_by_name(name).to_python()
        cells += sum(map(len, rows))
print(cells)
"""


def _tree_pss_mib(pid: int) -> float:
    """Proportional set size of a process and its descendants, in MiB (Linux). Unlike the RSS of each
    process, PSS counts a page shared copy-on-write with a forked helper once, so the sum is the memory
    the run really holds. 0 where /proc has no smaps_rollup."""
    total_kib, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
                    break
            for task in Path(f"/proc/{p}").joinpath("task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return total_kib / 1024


def timed(cmd: list[str], sample_memory: bool = False) -> tuple[float, float, str, float, float]:
    """Wall seconds, peak RSS (MiB, the largest single process), output, CPU seconds (user + system,
    with the processes it waited for; steadier than wall time on a shared machine) and, with
    ``sample_memory``, the peak PSS of the whole process tree sampled once a second (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak_pss, next_sample = 0.0, 0.0
    while sample_memory:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() >= next_sample:
            peak_pss = max(peak_pss, _tree_pss_mib(proc.pid))
            next_sample = time.perf_counter() + 1.0
        time.sleep(0.02)  # notice the end promptly: the wall time is the measurement
    else:
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    out = proc.stdout.read() + proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{out}")
    return elapsed, usage.ru_maxrss / 1024, out, usage.ru_utime + usage.ru_stime, peak_pss


def ensure_data(customers: int, seed: int, ipc: float, opc: float) -> Path:
    data = ROOT / "bench" / "data" / f"c{customers}_s{seed}_i{ipc:g}_o{opc:g}"
    if not (data / "orders.xlsx").exists():
        print(f"generating {customers} customers into {data} …", flush=True)
        t0 = time.perf_counter()
        subprocess.run([PY, "-m", "engine.cli", "sample", "--customers", str(customers), "--seed", str(seed),
                        "--interactions-per-customer", str(ipc), "--orders-per-customer", str(opc), "--out", str(data)],
                       check=True, cwd=ROOT)
        print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--interactions-per-customer", type=float, default=10)
    ap.add_argument("--orders-per-customer", type=float, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--as-of", default="2026-11-20")
    args = ap.parse_args()

    data = ensure_data(args.customers, args.seed, args.interactions_per_customer, args.orders_per_customer)
    out_root = ROOT / "bench" / "out"
    reads, runs, peaks, run_output = [], [], [], ""
    read_cpus, run_cpus, psss = [], [], []
    for i in range(args.repeat):
        t, _, _, cpu, _ = timed([PY, "-c", READ_ONLY, str(data)])
        reads.append(t)
        read_cpus.append(cpu)
        outbox = out_root / f"outbox-{i}"
        if outbox.exists():
            subprocess.run(["rm", "-rf", str(outbox)], check=True)
        t, peak, run_output, cpu, pss = timed([PY, "-m", "engine.cli", "run", "--policies", "policies", "--inbox", str(data),
                                     "--outbox", str(outbox), "--as-of", args.as_of, "--ledger", str(outbox / "ledger.sqlite")],
                                        sample_memory=True)
        runs.append(t)
        run_cpus.append(cpu)
        peaks.append(peak)
        psss.append(pss)
        print(f"round {i + 1}: read {reads[-1]:.1f} s (CPU {read_cpus[-1]:.1f} s), run {runs[-1]:.1f} s "
              f"(CPU {run_cpus[-1]:.1f} s on 2 cores), peak {peak:.0f} MiB "
              f"(whole process tree, PSS sampled each second: {pss:.0f} MiB)", flush=True)
    read, run = min(reads), min(runs)
    results = {
        "customers": args.customers,
        "interactions_per_customer": args.interactions_per_customer,
        "orders_per_customer": args.orders_per_customer,
        "read_seconds": round(read, 2),
        "run_seconds": round(run, 2),
        "ratio_run_to_read": round(run / read, 2),
        "read_cpu_seconds": round(min(read_cpus), 2),
        "run_cpu_seconds": round(min(run_cpus), 2),
        "peak_memory_mib": round(max(peaks)),
        "peak_tree_pss_mib": round(max(psss)),
        "targets": {"ratio_run_to_read": 1.5, "peak_memory_mib": 2048},
        # The run's own progress lines carry the elapsed time of each phase.
        "run_phases": [line for line in run_output.splitlines() if line.startswith("[") and "已评估" not in line],
    }
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "results.json").write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
