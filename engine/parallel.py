"""Use the second core: two helper processes, forked before the exports are read.

Python runs one thread at a time, so a batch run uses a second core only through a second process.
Both helpers are forked at the start of the run, before any facts exist: they share nothing big with
the main process. (A fork later would share every object copy-on-write, and reference counting
writes to the pages it reads: earlier measurements copied ~0.9 GiB at 100,000 customers.) What they
need is sent to them through a pipe, packed as plain tuples (engine.transfer), in parts.

* ``SecondEvaluator`` evaluates the last customers of the batch while the main process evaluates
  the first ones. It evaluates each chunk of facts as it arrives and sends that chunk's rows, tasks,
  messages and decisions at once, then its stage modules' states; the main process keeps them as
  received bytes until its own part is done, then appends them after its own, in order. So the
  helper holds one chunk at a time and ends early (its memory goes with it).
* ``SecondWriter`` writes the stage modules' files (sla.xlsx) while the main process checks the
  guards, then guards.xlsx, customers.xlsx and tasks/*.xlsx while the main process writes the others.

Either way the files are byte-identical to those of one process doing everything
(tests/test_parallel.py). At 100,000 customers on a quiet machine evaluating takes ~12 s instead of
~24 s and writing ~8 s instead of ~18 s; the whole run peaks at ~1.6–1.7 GiB PSS (bench/). Handing
over the facts costs this process ~0.9 CPU-s to pack and pickle (engine.transfer: columns, dates and
datetimes encoded; ~1.7 s as tuples of objects).

CRM_ENGINE_PROCESSES: unset (auto) uses the helpers on Linux when two cores are there, no other
thread runs and the inbox is large enough to gain from them; ``1`` keeps everything in one
process; ``2`` uses them whatever the size or cores, wherever the OS can fork.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import socket
import sys
import threading
import traceback
from bisect import bisect_left
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from operator import attrgetter
from pathlib import Path
from typing import Any, Callable, NoReturn

from engine.errors import EngineError, Problem
from engine.features import group_by_customer
from engine.memory import gc_paused
from engine.transfer import DECISION_KINDS, drain_decisions, pack_facts, pack_part, unpack_facts, unpack_part
from engine.xlsx_out import Workbook, write_workbooks

# Auto mode uses the helpers only for an inbox at least this large: below, forking and packing cost
# more than the second core saves (the shipped 500-customer sample is ~0.4 MB, 10,000 customers ~8 MB).
SPLIT_MIN_INBOX_BYTES = 2_000_000
CHUNK_CUSTOMERS = 5_000  # facts travel in chunks: the evaluator evaluates one while the next is packed
PART_ITEMS = 20_000  # results travel in parts too: one pickle of everything memoizes every object in one table, ~3x slower

StartEvaluating = Callable[[], Any]  # returns an engine.run.BatchEvaluator
WriteFiles = Callable[[Path, dict[str, list]], Any]  # (run folder, {"rows": […], "tasks": […], …}): see run.write_listed_files


def _processes_setting() -> str:
    return os.environ.get("CRM_ENGINE_PROCESSES", "auto").strip() or "auto"


def _fork_available() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _inbox_bytes(inbox: Path) -> int:
    try:
        return sum(p.stat().st_size for p in Path(inbox).glob("*.xlsx") if p.is_file())
    except OSError:
        return 0


def wants_helpers(inbox: Path) -> bool:
    setting = _processes_setting()
    # Forking a process that runs other threads can leave the child stuck on a lock one of them held
    # (e.g. when the engine is embedded in a threaded server): then stay in one process.
    if setting == "1" or not _fork_available() or threading.active_count() > 1:
        return False
    if setting == "2":
        return True
    # Auto: on Linux only (macOS can fork, but its system libraries are not fork-safe).
    return (sys.platform.startswith("linux") and _usable_cores() >= 2
            and _inbox_bytes(inbox) >= SPLIT_MIN_INBOX_BYTES)


class _Forked:
    """A forked process and the pipe to it; ``target(conn, *args)`` runs in the process."""

    def __init__(self, target: Callable[..., None], *args: Any):
        ctx = multiprocessing.get_context("fork")
        self._conn, child_end = ctx.Pipe()
        for end in (self._conn, child_end):
            _widen(end)
        self._process = ctx.Process(target=_in_child, args=(target, child_end, self._conn, *args), daemon=True)
        self._process.start()
        child_end.close()

    def _send(self, message: Any) -> None:
        try:
            self._conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, ConnectionResetError):
            self._ended()

    def _send_end(self) -> None:
        """An empty message: "that was all"."""
        try:
            self._conn.send_bytes(b"")
        except (BrokenPipeError, ConnectionResetError):
            self._ended()

    def _receive(self) -> tuple[str, Any]:
        """The next message; a message ``("error", exc)`` is raised here: the error the process met."""
        try:
            kind, payload = pickle.loads(self._conn.recv_bytes())
        except EOFError:
            self._ended()
        if kind == "error":
            raise payload
        return kind, payload

    def _ended(self) -> NoReturn:
        """The process is gone without a result: killed (e.g. by the out-of-memory killer) or crashed."""
        self._process.join()
        raise EngineError(Problem(
            "helper-process-ended", f"本次运行的一个辅助进程没有给出结果就结束了（退出码 {self._process.exitcode}）：什么也没有写出 / "
            f"a helper process of this run ended without a result (exit code {self._process.exitcode}); nothing was written",
            fix="再运行一次；如果又出现，用 CRM_ENGINE_PROCESSES=1（单进程）运行 / "
                "run again; if it happens again, run with CRM_ENGINE_PROCESSES=1 (one process)")) from None

    def close(self) -> None:
        """End the process: a process still waiting for work sees the pipe close and stops; one
        still working (this run failed) is stopped."""
        self._conn.close()
        self._process.join(timeout=2)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()


# Each side reads the pipe on a thread while its main thread works, so a read gets the GIL only every
# few milliseconds (sys.getswitchinterval): with the default ~200 KB socket buffer the sender then
# waits, sending ~40 MB/s. A few MB per read keep it flowing.
PIPE_BUFFER_BYTES = 4 << 20


def _widen(conn) -> None:
    """Ask for ``PIPE_BUFFER_BYTES`` of socket buffer each way (the OS caps it at its maximum,
    net.core.wmem_max / rmem_max on Linux)."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, PIPE_BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PIPE_BUFFER_BYTES)
    except OSError:
        pass  # not a socket (another platform's pipe): the default buffer


def _end_at_once() -> NoReturn:
    """End this helper now that its work is sent: freeing its objects one by one would only keep
    the main process waiting for it to end (~0.5 s at 100,000 customers)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _in_child(target: Callable[..., None], conn, parent_end, *args: Any) -> None:
    parent_end.close()  # the fork's copy of the main process's end: else the pipe never looks closed

    def send(message: Any) -> None:
        conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    try:
        with gc_paused():  # millions of new objects, no cycles; the process ends soon after
            target(conn, send, *args)
    except (EOFError, BrokenPipeError):
        pass  # the main process closed the pipe: it no longer wants the result
    except BaseException as exc:  # sent back: the main process raises it
        try:
            send(("error", exc))
        except (EOFError, BrokenPipeError):
            pass
        except Exception:  # an error that does not pickle: send its text
            text = "".join(traceback.format_exception(exc))
            send(("error", RuntimeError(f"a helper process failed:\n{text}")))
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------
# Evaluating
# --------------------------------------------------------------------------------------------------

_CUSTOMER_ID = attrgetter("customer_id")


def facts_start(facts: list, customers: list, index: int, lo: int = 0) -> int:
    """Where the facts of ``customers[index:]`` start in ``facts`` (its end if ``index`` is past the
    last customer). Both lists sorted by customer id, as ``read_inbox`` returns them."""
    if index >= len(customers):
        return len(facts)
    return bisect_left(facts, customers[index].customer_id, lo=lo, key=_CUSTOMER_ID)


class SecondEvaluator(_Forked):
    """Evaluates the last customers of the batch (see the module's notes).

    Both sides keep the pipe moving with a thread that only reads it: the helper evaluates each chunk
    of facts as soon as it arrives and sends that chunk's decisions at once, while the main process,
    still sending facts or evaluating its own customers, keeps what arrives as received bytes. So
    neither waits for the other, and the helper holds one chunk's facts and decisions at a time."""

    def __init__(self, start: StartEvaluating):
        super().__init__(_evaluate, start)
        self._frames: list[bytes] = []
        self._reader: threading.Thread | None = None

    def send(self, customers: list, interactions: list, orders: list) -> None:
        """Send the customers this process is to evaluate, with their facts. Every list is sorted by
        customer id (as ``read_inbox`` returns them), so each chunk's facts are one slice."""
        self._reader = threading.Thread(target=self._keep_frames, name="crm-engine-results", daemon=True)
        self._reader.start()
        i = o = 0
        for start in range(0, len(customers), CHUNK_CUSTOMERS):
            after = start + CHUNK_CUSTOMERS
            i_end, o_end = facts_start(interactions, customers, after, i), facts_start(orders, customers, after, o)
            self._send(pack_facts(customers[start:after], interactions[i:i_end], orders[o:o_end]))
            i, o = i_end, o_end
        self._send_end()

    def _keep_frames(self) -> None:
        """The reading thread: every message as received, until the empty one after the last (or
        the end of the pipe: an error was sent, or the process ended)."""
        try:
            while frame := self._conn.recv_bytes():
                self._frames.append(frame)
        except (EOFError, OSError):
            pass

    def receive(self) -> tuple[dict[str, list], tuple[dict[str, Any], list[Problem]]]:
        """Wait for the result: its ``rows``, ``tasks``, ``messages`` and ``firings`` (a dict of lists),
        and its stage modules' states with its warnings (``Evaluation.warnings``). Raises the error it
        met, as it met it: the error one process evaluating every customer would have stopped with."""
        if self._reader is not None:
            self._reader.join()
        decisions: dict[str, list] = {kind: [] for kind in DECISION_KINDS}
        frames, self._frames = self._frames, []
        with gc_paused():  # a few hundred thousand objects, no cycles
            for n, frame in enumerate(frames):
                kind, payload = pickle.loads(frame)
                frames[n] = b""  # let the bytes go as they are read
                if kind == "error":
                    raise payload
                if kind == "states":  # the last message
                    return decisions, payload
                decisions[kind] += unpack_part(kind, payload)
        self._ended()

    def close(self) -> None:
        if self._reader is not None and self._reader.is_alive():
            # The reading thread waits on the pipe: end the process first (its end of the pipe
            # closes, the read returns) rather than close a file descriptor another thread reads.
            self._process.terminate()
            self._reader.join()
        super().close()


def _read_on_a_thread(conn) -> queue.SimpleQueue:
    """Messages from the main process as they arrive, read by a thread so that the main process
    never waits to send while this one works: each message's bytes, then ``b""`` after the last
    (the main process sent an empty one), or ``None`` if it closed the pipe (it no longer wants
    the result)."""
    arrived: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

    def keep_arriving() -> None:
        try:
            while frame := conn.recv_bytes():
                arrived.put(frame)
            arrived.put(b"")
        except (EOFError, OSError):
            arrived.put(None)

    threading.Thread(target=keep_arriving, name="crm-engine-pipe", daemon=True).start()
    return arrived


def _evaluate(conn, send: Callable[[Any], None], start: StartEvaluating) -> None:
    arrived = _read_on_a_thread(conn)
    batch = start()
    evaluation = batch.evaluation
    while frame := arrived.get():
        customers, interactions, orders = unpack_facts(pickle.loads(frame))
        del frame
        batch.add(customers, group_by_customer(interactions), group_by_customer(orders))
        del customers, interactions, orders
        for message in drain_decisions(evaluation.customer_rows, evaluation.tasks, evaluation.messages, evaluation.firings,
                                       size=PART_ITEMS):
            send(message)
    if frame is None:
        return
    send(("states", ({stage: module.export_state() for stage, module in evaluation.modules.items()}, evaluation.warnings)))
    conn.send_bytes(b"")  # the end: the main process's reading thread stops
    _end_at_once()


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

class SecondWriter(_Forked):
    """Writes part of the run folder while the main process writes the rest (see the module's notes)."""

    def __init__(self, write: WriteFiles):
        super().__init__(_write, write)

    def begin(self, folder: Path, workbooks: dict[str, Workbook]) -> None:
        """Write into ``folder``, the run folder, starting with ``workbooks`` (by file name) now,
        while the main process checks the guards."""
        self._send(("folder", folder))
        self.write_workbooks(workbooks)

    def write_workbooks(self, workbooks: dict[str, Workbook]) -> None:
        """Write these (by file name) as soon as they arrive."""
        self._send(("workbooks", workbooks))

    def start(self, lists: dict[str, list]) -> None:
        """Send what ``write`` needs and return: the files are written meanwhile. ``lists``: by kind
        (engine.transfer packs "rows", "columns", "contacts", "history", "tasks", "open_tasks", "origins", "messages", "suppressed",
        "rescheduled"), each in order."""
        for kind, items in lists.items():
            for start in range(0, max(len(items), 1), PART_ITEMS):  # an empty list too: ``write`` reads every kind
                self._send((kind, pack_part(kind, items[start:start + PART_ITEMS])))
        self._send_end()

    def finish(self) -> Any:
        """Wait until the files are written; raises the error the writer met."""
        _, result = self._receive()
        return result


def _write(conn, send: Callable[[Any], None], write: WriteFiles) -> None:
    arrived = _read_on_a_thread(conn)
    folder: Path | None = None
    lists: dict[str, list] = {}
    failed: Exception | None = None
    while frame := arrived.get():
        kind, payload = pickle.loads(frame)
        if kind == "folder":
            folder = payload
        elif kind == "workbooks":
            try:
                write_workbooks(folder, payload)
            except Exception as exc:  # raised once all has arrived: the main process is still sending
                failed = exc
        else:
            lists.setdefault(kind, []).extend(unpack_part(kind, payload))
    if frame is None:
        return  # the main process closed the pipe: it no longer wants the files
    if failed is not None:
        raise failed
    send(("written", write(folder, lists)))
    _end_at_once()


@contextmanager
def helpers(start_evaluating: StartEvaluating, write: WriteFiles, inbox: Path) -> Iterator[tuple[SecondEvaluator | None, SecondWriter | None]]:
    """``(evaluator, writer)`` when the helpers are on for this inbox (else ``(None, None)``), closed
    at the end whatever happens. Call before reading the exports."""
    if not wants_helpers(inbox):
        yield None, None
        return
    with ExitStack() as stack:
        evaluator = SecondEvaluator(start_evaluating)
        stack.callback(evaluator.close)
        writer = SecondWriter(write)
        stack.callback(writer.close)
        yield evaluator, writer
