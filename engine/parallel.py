"""Use the second core: evaluate part of the customers in a second process, and (when asked to)
write independent output files on two cores.

CRM_ENGINE_PROCESSES: unset (the default) evaluates in two processes where the OS can fork, two
cores are there and the inbox is large enough to gain from it; ``1`` keeps everything in one
process; ``2`` evaluates in two processes whatever the size and also writes on two (below).

Evaluating in two processes
---------------------------
``SecondEvaluator`` forks before the exports are read, so the second process shares nothing big
with this one (after a later fork, copy-on-write would copy every page whose reference counts
either process touched: about 1 GiB of facts at 100,000 customers). It is sent the facts of the
last customers packed (engine.transfer), evaluates them with the same policies while this process
evaluates the others, and sends back its rows, tasks, messages, decisions and stage-module states,
which are appended after this process's own: the same order, and so the same files, as one process
evaluating every customer.

Writing in two processes
------------------------

Writing large workbooks is CPU-bound: the cells are converted in Python, which holds the GIL, so
threads do not help. With CRM_ENGINE_PROCESSES=2, where the OS can fork (Linux), one group of writers
runs in a forked child that already has every row in memory (nothing is copied or pickled on the way
in); only small results (counts) come back. Otherwise the groups run one after the other. The files
written are the same either way.

One process is the default: at 100,000 customers the second process cuts writing from 23–32 s to
18–20 s but holds about 0.9 GiB more memory (the whole run: 2.7 instead of 1.8 GiB, measured as the
PSS of the process tree), because Python's reference counting writes to the shared pages it reads and
copy-on-write then copies them.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import traceback
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable

from engine.memory import gc_paused
from engine.model import Dataset
from engine.transfer import DECISION_KINDS, decision_parts, pack_facts, unpack_decision_part, unpack_facts

Job = Callable[[], Any]

# Auto mode evaluates in two processes only for an inbox at least this large: below, forking and
# packing cost more than the second core saves (the shipped 500-customer sample is ~0.4 MB).
SPLIT_MIN_INBOX_BYTES = 2_000_000
CHUNK_CUSTOMERS = 5_000  # facts travel in chunks: the second process unpacks one while the next is packed
RESULT_PART_ITEMS = 20_000  # results travel in parts too (one big pickle is slower, see engine.transfer)


def _processes_setting() -> str:
    return os.environ.get("CRM_ENGINE_PROCESSES", "auto").strip() or "auto"


def _fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _can_fork() -> bool:
    """Write in two processes: only when asked to (it costs memory, see above)."""
    return _fork_available() and _processes_setting() == "2"


def _child(jobs: list[Job], conn) -> None:
    try:
        conn.send(("ok", [job() for job in jobs]))
    except BaseException as exc:  # report anything; the parent raises it
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        conn.close()


def run_two_groups(child_jobs: list[Job], parent_jobs: list[Job]) -> tuple[list[Any], list[Any]]:
    """Run ``child_jobs`` in a forked process while this process runs ``parent_jobs``.

    Returns both lists of results. If either side fails, raises after both have finished.
    """
    if not _can_fork() or not child_jobs:
        return [job() for job in child_jobs], [job() for job in parent_jobs]
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child_jobs, sender), daemon=True)
    process.start()
    sender.close()
    try:
        parent_results = [job() for job in parent_jobs]
    finally:
        try:
            status, payload = receiver.recv()
        except EOFError:
            status, payload = "error", f"the writer process ended without a result (exit code {process.exitcode})"
        process.join()
        receiver.close()
    if status != "ok":
        raise RuntimeError(f"writing run files failed in the second process: {payload}")
    return payload, parent_results


# --------------------------------------------------------------------------------------------------
# Evaluating in two processes
# --------------------------------------------------------------------------------------------------

EvaluatePart = Callable[[Dataset], Any]  # returns engine.run.Evaluation; may empty the Dataset's fact lists


def _inbox_bytes(inbox: Path) -> int:
    try:
        return sum(p.stat().st_size for p in Path(inbox).glob("*.xlsx") if p.is_file())
    except OSError:
        return 0


def wants_second_evaluator(inbox: Path) -> bool:
    setting = _processes_setting()
    if setting == "1" or not _fork_available():
        return False
    if setting == "2":
        return True
    return _usable_cores() >= 2 and _inbox_bytes(inbox) >= SPLIT_MIN_INBOX_BYTES


class SecondEvaluator:
    """A forked process that evaluates the last customers of the batch (see the module's notes)."""

    def __init__(self, evaluate: EvaluatePart):
        ctx = multiprocessing.get_context("fork")
        self._conn, child_end = ctx.Pipe()
        self._process = ctx.Process(target=_evaluate_in_child, args=(evaluate, child_end, self._conn), daemon=True)
        self._process.start()
        child_end.close()
        self._sent = False

    def send(self, customers: list, interactions: list, orders: list) -> None:
        """Send the customers this process will evaluate, with their facts. Every list is sorted by
        customer id (as ``read_inbox`` returns them), so each chunk's facts are one slice."""
        key = attrgetter("customer_id")
        i = o = 0
        for start in range(0, len(customers), CHUNK_CUSTOMERS):
            chunk = customers[start:start + CHUNK_CUSTOMERS]
            after = start + CHUNK_CUSTOMERS
            if after < len(customers):  # facts up to the next chunk's first customer
                i_end = bisect_left(interactions, customers[after].customer_id, lo=i, key=key)
                o_end = bisect_left(orders, customers[after].customer_id, lo=o, key=key)
            else:
                i_end, o_end = len(interactions), len(orders)
            packed = pack_facts(chunk, interactions[i:i_end], orders[o:o_end])
            self._conn.send_bytes(pickle.dumps(packed, protocol=pickle.HIGHEST_PROTOCOL))
            i, o = i_end, o_end
        self._conn.send_bytes(b"")  # the end: evaluate
        self._sent = True

    def receive(self) -> tuple[dict[str, list], dict[str, Any]]:
        """Wait for the second process: its ``rows``, ``tasks``, ``messages`` and ``firings`` (a dict
        of lists) and its stage modules' states. Raises the error it met, as it met it: the error one
        process evaluating every customer would have stopped with."""
        decisions: dict[str, list] = {kind: [] for kind in DECISION_KINDS}
        with gc_paused():  # a few hundred thousand objects, no cycles
            while True:
                try:
                    kind, payload = pickle.loads(self._conn.recv_bytes())
                except EOFError:
                    self._process.join()
                    raise RuntimeError("the second evaluating process ended without a result "
                                       f"(exit code {self._process.exitcode})") from None
                if kind == "error":
                    raise payload
                if kind == "states":  # the last message
                    return decisions, payload
                decisions[kind] += unpack_decision_part(kind, payload)

    def close(self) -> None:
        """End the process: at once if it was never sent anything or is still working."""
        self._conn.close()  # a process still waiting for facts sees the end and stops
        self._process.join(timeout=5 if not self._sent else 0.5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


@contextmanager
def second_evaluator(evaluate: EvaluatePart, inbox: Path) -> Iterator[SecondEvaluator | None]:
    """A ``SecondEvaluator`` when evaluating in two processes is on for this inbox, else None;
    closed at the end whatever happens."""
    helper = SecondEvaluator(evaluate) if wants_second_evaluator(inbox) else None
    try:
        yield helper
    finally:
        if helper is not None:
            helper.close()


def _evaluate_in_child(evaluate: EvaluatePart, conn, parent_end) -> None:
    parent_end.close()  # the copy of the parent's end that the fork gave us: else no end of input is seen

    def send(message: tuple[str, Any]) -> None:
        conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        customers: list = []
        interactions: list = []
        orders: list = []
        with gc_paused():
            while blob := conn.recv_bytes():
                c, i, o = unpack_facts(pickle.loads(blob))
                customers += c
                interactions += i
                orders += o
            del blob
            part = Dataset(customers, interactions, orders)
            del customers, interactions, orders  # only ``part`` holds them: evaluating frees them as it goes
            evaluation = evaluate(part)
            for part in decision_parts(evaluation.customer_rows, evaluation.tasks, evaluation.messages,
                                       evaluation.firings, size=RESULT_PART_ITEMS):
                send(part)
            send(("states", {stage: module.export_state() for stage, module in evaluation.modules.items()}))
    except (EOFError, BrokenPipeError):
        return  # the parent closed the pipe: it no longer wants the result
    except BaseException as exc:  # the parent raises it
        try:
            send(("error", exc))
        except (EOFError, BrokenPipeError):
            return
        except Exception:  # an error that does not pickle: send its text
            text = "".join(traceback.format_exception(exc))
            send(("error", RuntimeError(f"the second evaluating process failed:\n{text}")))
    finally:
        conn.close()

