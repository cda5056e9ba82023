"""Rule evaluation speed: the default backend against the durable_rules backend, and GoRules zen-engine
as a peer reference on one decision table.

In one run, on the same customers (made by the sample generator, cached under bench/data/) and the
shipped policy set:

  policy set   every rule set of every stage for each customer (conditions, hit policies, tags written
               back for later rule sets), two ways, each with both backends: per customer (through
               ``engine.evaluate.Evaluator``, what ``crm-engine run`` does) and by rule set (each rule set
               over all customers; durable_rules posts them BATCH_SIZE facts at a time);
  one table    the value_tier decision table (policies/tables/value_tier.xlsx) alone: the default
               backend, durable_rules, and zen-engine on the same table written as a JDM decision table.

Every engine must give the same answers (checked); then evaluations per second and the ratios are
printed and written to bench/out/durable_results.json. Target (DESIGN.md): default >= 30x durable.

    .venv/bin/python bench/durable_bench.py                      # 5,000 customers
    .venv/bin/python bench/durable_bench.py --customers 2000 --repeat 1

zen-engine is not a dependency: ``.venv/bin/pip install zen-engine`` to include it (skipped otherwise).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.backends.durable_backend import BATCH_SIZE, DurableBackend  # noqa: E402
from engine.backends.python_backend import PythonBackend  # noqa: E402
from engine.evaluate import Evaluator, apply_hit_policy  # noqa: E402
from engine.policy.loader import load_policies  # noqa: E402
from engine.policy.model import STAGES, AddScore, RuleSet, SetTag  # noqa: E402
from engine.readers import load_columns, read_inbox  # noqa: E402
from engine.run import evaluate_dataset  # noqa: E402
from engine.sample import write_sample  # noqa: E402

AS_OF = date(2026, 11, 20)
POLICIES = ROOT / "policies"
TARGET_RATIO = 30


def customer_features(customers: int, seed: int) -> tuple[Any, list[dict]]:
    """The policy set and each customer's features as the rule sets see them before any rule fires."""
    data = ROOT / "bench" / "data" / f"durable_c{customers}_s{seed}"
    if not (data / "orders.xlsx").exists():
        print(f"generating {customers} customers into {data} …", flush=True)
        write_sample(data, customers, seed, as_of=AS_OF)
    policyset = load_policies(POLICIES)
    dataset = read_inbox(data, load_columns(POLICIES / "columns.yaml"))
    # The full run derives every feature (including the stage modules' own, e.g. festivals_due);
    # its rows hold them, with the tags and scores the rules set: those are reset to "not yet set".
    rows = evaluate_dataset(policyset, dataset, AS_OF, ROOT / "templates", engine="python").customer_rows
    evaluator = Evaluator(policyset.rulesets, PythonBackend())
    features = []
    for row in rows:
        f = {k: v for k, v in row.items() if k not in ("task_count", "message_count")}
        for name in evaluator.tag_names:
            f[name] = None
        for name in evaluator.score_names:
            f[name] = 0
        features.append(f)
    return policyset, features


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - t0)
    return best, result


# -- the whole policy set ---------------------------------------------------------------------------

def per_customer(policyset: Any, backend: Any, features: list[dict]) -> list[list[str]]:
    """What ``evaluate_dataset`` does: each customer through every stage's rule sets."""
    evaluator = Evaluator(policyset.rulesets, backend)
    fired = []
    for f in features:
        f = dict(f)
        ids = []
        for stage_index in range(len(STAGES)):
            ids.extend(hit.rule.rule_id for hit in evaluator.run_stage(stage_index, f))
        fired.append(ids)
    return fired


def by_rule_set(policyset: Any, backend: Any, features: list[dict]) -> list[list[str]]:
    """Each rule set for all customers at once, in stage order, with the same writes back: durable_rules
    posts them in batches (matching_many); the default backend has no batch call and loops."""
    copies = [dict(f) for f in features]
    fired: list[list[str]] = [[] for _ in copies]
    for stage in STAGES:
        for rs in policyset.rulesets.get(stage, []):
            compiled = backend.compile(rs)
            many = getattr(compiled, "matching_many", None)
            results = many(copies) if many else [compiled.matching(f) for f in copies]
            for n, matched in enumerate(results):
                for i in apply_hit_policy(rs, matched)[0]:
                    rule = rs.rules[i]
                    fired[n].append(rule.rule_id)
                    for out in rule.outputs:
                        if type(out) is SetTag:
                            copies[n][out.name] = out.value
                        elif type(out) is AddScore:
                            copies[n][out.name] = (copies[n].get(out.name) or 0) + out.points
    return fired


# -- one decision table -----------------------------------------------------------------------------

def value_tier(policyset: Any) -> RuleSet:
    (rs,) = [rs for rs in policyset.rulesets["classification"] if rs.policy_id == "value_tier"]
    return rs


def zen_jdm(rs: RuleSet) -> str:
    """The value_tier table as a GoRules JDM decision table: the same input columns, cell tests and
    hit policy, built from the rule set's own cells (e.g. ``>= 100000``; ``-`` is "any")."""
    inputs = list(dict.fromkeys(col for rule in rs.rules for col in rule.cells))
    columns = {name: f"i{k}" for k, name in enumerate(inputs)}
    rules = []
    for rule in rs.rules:
        row = {"_id": rule.rule_id, "o_rule": json.dumps(rule.rule_id)}
        for name, cid in columns.items():
            cell = str(rule.cells.get(name, "-")).strip()
            row[cid] = "" if cell in ("-", "") else cell
        rules.append(row)
    table = {"hitPolicy": rs.hit_policy,
             "inputs": [{"id": cid, "name": name, "field": name} for name, cid in columns.items()],
             "outputs": [{"id": "o_rule", "name": "rule_id", "field": "rule_id"}],
             "rules": rules}
    jdm = {"nodes": [{"id": "in", "type": "inputNode", "name": "request", "position": {"x": 0, "y": 0}},
                     {"id": "table", "type": "decisionTableNode", "name": rs.policy_id, "position": {"x": 200, "y": 0},
                      "content": table},
                     {"id": "out", "type": "outputNode", "name": "response", "position": {"x": 400, "y": 0}}],
           "edges": [{"id": "e1", "type": "edge", "sourceId": "in", "targetId": "table"},
                     {"id": "e2", "type": "edge", "sourceId": "table", "targetId": "out"}]}
    return json.dumps(jdm, ensure_ascii=False)


def table_inputs(rs: RuleSet, features: list[dict]) -> list[dict]:
    names = sorted({n for rule in rs.rules for n in rule.cells})
    return [{n: f.get(n) for n in names} for f in features]


def table_with(compiled: Any, rs: RuleSet, inputs: list[dict]) -> list[str | None]:
    out = []
    for f in inputs:
        fired = apply_hit_policy(rs, compiled.matching(f))[0]
        out.append(rs.rules[fired[0]].rule_id if fired else None)
    return out


def table_with_zen(decision: Any, inputs: list[dict]) -> list[str | None]:
    return [decision.evaluate(f)["result"].get("rule_id") for f in inputs]


# -- report -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for the fast engines (durable_rules runs once)")
    args = parser.parse_args()

    policyset, features = customer_features(args.customers, args.seed)
    n = len(features)
    n_rulesets = sum(len(v) for v in policyset.rulesets.values())
    durable = DurableBackend()
    print(f"{n} customers, {n_rulesets} rule sets; python {platform.python_version()}", flush=True)

    rows: list[dict[str, Any]] = []

    def add(scope: str, engine: str, seconds: float, evaluations: int, note: str = "") -> None:
        rows.append({"scope": scope, "engine": engine, "seconds": round(seconds, 4), "evaluations": evaluations,
                     "per_second": round(evaluations / seconds, 1), "note": note})
        print(f"  {scope:<10} {engine:<28} {evaluations / seconds:>12,.0f} /s  ({seconds:.2f} s)", flush=True)

    # The whole policy set: one evaluation = one customer through all rule sets.
    t_py, fired_py = best_of(args.repeat, lambda: per_customer(policyset, PythonBackend(), features))
    add("policy set", "default (python)", t_py, n)
    t_du, fired_du = best_of(1, lambda: per_customer(policyset, durable, features))
    add("policy set", "durable_rules, per customer", t_du, n)
    t_pb, fired_pb = best_of(args.repeat, lambda: by_rule_set(policyset, PythonBackend(), features))
    add("policy set", "default, by rule set", t_pb, n, "each rule set over all customers")
    t_db, fired_db = best_of(1, lambda: by_rule_set(policyset, durable, features))
    add("policy set", f"durable_rules, batches of {BATCH_SIZE}", t_db, n, "each rule set over all customers")
    if not (fired_py == fired_du == fired_pb == fired_db):
        sys.exit("the backends disagree on the policy set: run the tests (tests/test_durable.py)")

    # One table: value_tier alone.
    rs = value_tier(policyset)
    inputs = table_inputs(rs, features)
    compiled_py, compiled_du = PythonBackend().compile(rs), durable.compile(rs)
    t_tpy, tiers_py = best_of(args.repeat, lambda: table_with(compiled_py, rs, inputs))
    add("value_tier", "default (python)", t_tpy, n)
    t_tdu, tiers_du = best_of(1, lambda: table_with(compiled_du, rs, inputs))
    add("value_tier", "durable_rules, per customer", t_tdu, n)
    zen_result: dict[str, Any] = {"available": False}
    try:
        import zen
    except ImportError:
        print("  value_tier zen-engine: not installed (.venv/bin/pip install zen-engine), skipped")
    else:
        decision = zen.ZenEngine().create_decision(zen_jdm(rs))
        t_zen, tiers_zen = best_of(args.repeat, lambda: table_with_zen(decision, inputs))
        add("value_tier", "zen-engine (JDM table)", t_zen, n)
        agree = sum(a == b for a, b in zip(tiers_py, tiers_zen))
        zen_result = {"available": True, "version": getattr(zen, "__version__", None) or _dist_version("zen-engine"),
                      "agrees_with_default": agree, "of": n, "ratio_default_over_zen": round(t_zen / t_tpy, 1)}
        if agree != n:
            print(f"  note: zen-engine agrees with the default backend on {agree} of {n} customers")
    if tiers_py != tiers_du:
        sys.exit("the backends disagree on value_tier")

    ratio_set = t_du / t_py
    ratio_batched = t_db / t_pb
    ratio_table = t_tdu / t_tpy
    print()
    print(f"default / durable_rules, policy set, per customer: {ratio_set:,.0f}x   (target >= {TARGET_RATIO}x)")
    print(f"default / durable_rules, policy set, by rule set:  {ratio_batched:,.0f}x   (durable_rules batched)")
    print(f"default / durable_rules, value_tier table:         {ratio_table:,.0f}x")
    if zen_result["available"]:
        print(f"default / zen-engine,    value_tier table:         {zen_result['ratio_default_over_zen']:,.0f}x")
    results = {
        "customers": n, "rule_sets": n_rulesets, "as_of": AS_OF.isoformat(), "python": platform.python_version(),
        "durable_rules": _dist_version("durable-rules"), "batch_size": BATCH_SIZE, "repeat": args.repeat,
        "rows": rows,
        "ratio_default_over_durable_per_customer": round(ratio_set, 1),
        "ratio_default_over_durable_batched": round(ratio_batched, 1),
        "ratio_default_over_durable_value_tier": round(ratio_table, 1),
        "target_ratio": TARGET_RATIO, "target_met": ratio_set >= TARGET_RATIO,
        "zen_engine": zen_result,
        "same_answers": True,
    }
    out = ROOT / "bench" / "out" / "durable_results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"written to {out.relative_to(ROOT)}")


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
