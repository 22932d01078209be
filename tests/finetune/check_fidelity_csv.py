#!/usr/bin/env python3
"""Checks the CSV files of s2ft-finetune's fidelity protocol against a second,
independent reading of the protocol (standard library only).

usage: check_fidelity_csv.py DIR --target T [--overtrain N] [--by-loss] [--seeds N] [--methods N]

From DIR/traces.csv it recomputes every run's match point (the first traced
point after step 0 where the new-task set reaches the target), its
over-training point (the first at or after N x the match step), the retention
means at both, and each method's chosen learning rate, and compares them with
DIR/results.csv. Exits 1 with the first disagreement, 0 with a summary.
"""
import argparse
import csv
import math
import sys
from collections import OrderedDict, defaultdict

TRACE_HEADER = "method,lr,seed,step,step_lr,train_loss,set,role,accuracy,loss,kl".split(",")
RESULT_HEADER = ("method,lr,seed,params,state_bytes,ms_per_step,peak_rss_mib,match_step,over_step,new_match,"
                 "retain_acc_match,retain_loss_match,retain_kl_match,contra_acc_match,retain_acc_over,"
                 "retain_loss_over,retain_kl_over,contra_acc_over,best_lr").split(",")


def fail(msg):
    print("check_fidelity_csv: " + msg, file=sys.stderr)
    sys.exit(1)


def num(text):
    return math.nan if text == "" else float(text)


def read(path, header):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0] != header:
        fail(f"{path}: header {rows[0] if rows else None} is not {header}")
    for r in rows[1:]:
        if len(r) != len(header):
            fail(f"{path}: row {r} has {len(r)} fields, expected {len(header)}")
    return [dict(zip(header, r)) for r in rows[1:]]


def close(a, b):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))


def mean(values):
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--target", type=float, required=True)
    ap.add_argument("--overtrain", type=int, default=3)
    ap.add_argument("--by-loss", action="store_true")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--methods", type=int, default=0, help="expected number of methods (0: any)")
    a = ap.parse_args()
    traces = read(a.dir + "/traces.csv", TRACE_HEADER)
    results = read(a.dir + "/results.csv", RESULT_HEADER)

    # run -> step -> set -> row; every point must list the same sets, in order.
    runs = OrderedDict()
    set_order = []
    for r in traces:
        key = (r["method"], float(r["lr"]), int(r["seed"]))
        point = runs.setdefault(key, OrderedDict()).setdefault(int(r["step"]), OrderedDict())
        if r["set"] in point:
            fail(f"run {key} step {r['step']}: set {r['set']} twice")
        point[r["set"]] = r
    for key, points in runs.items():
        steps = list(points)
        if steps != sorted(steps) or steps[0] != 0:
            fail(f"run {key}: steps {steps} do not start at 0 and ascend")
        for step, sets in points.items():
            names = [(n, s["role"]) for n, s in sets.items()]
            if not set_order:
                set_order = names
            if names != set_order:
                fail(f"run {key} step {step}: sets {names}, expected {set_order}")
    new_sets = [n for n, role in set_order if role == "new"]
    if len(new_sets) != 1:
        fail(f"expected one new-task set, got {new_sets}")
    new = new_sets[0]

    by_run = {(r["method"], float(r["lr"]), int(r["seed"])): r for r in results}
    if set(by_run) != set(runs):
        fail(f"runs in results.csv {sorted(by_run)} differ from those traced {sorted(runs)}")
    methods = list(OrderedDict.fromkeys(k[0] for k in runs))
    if a.methods and len(methods) != a.methods:
        fail(f"{len(methods)} methods traced, expected {a.methods}")
    matched_runs = 0
    score = defaultdict(list)  # (method, lr) -> retention at match of matched runs (None: not matched)
    for key, points in runs.items():
        steps = list(points)

        def metric(step, name, field):
            return num(points[step][name][field])

        def meets(step):
            v = metric(step, new, "loss" if a.by_loss else "accuracy")
            return (v <= a.target) if a.by_loss else (v >= a.target)

        match = next((s for s in steps if s > 0 and meets(s)), -1)
        over = next((s for s in steps if match > 0 and s >= a.overtrain * match), -1)
        res = by_run[key]
        if int(res["match_step"]) != match or int(res["over_step"]) != over:
            fail(f"run {key}: results say match {res['match_step']} over {res['over_step']}, traces give {match} {over}")
        for point, suffix in ((match, "match"), (over, "over")):
            if point < 0:
                continue
            retain = [n for n, role in set_order if role == "retain"]
            acc = mean([metric(point, n, "accuracy") for n in retain])
            kl = mean([metric(point, n, "kl") for n in retain])
            if not close(acc, num(res["retain_acc_" + suffix])) or not close(kl, num(res["retain_kl_" + suffix])):
                fail(f"run {key}: retention at {suffix} step {point} is acc {acc} kl {kl}, results say "
                     f"{res['retain_acc_' + suffix]} {res['retain_kl_' + suffix]}")
        if match > 0:
            matched_runs += 1
            new_value = metric(match, new, "loss" if a.by_loss else "accuracy")
            if not close(new_value, num(res["new_match"])):
                fail(f"run {key}: new-task metric at match {new_value}, results say {res['new_match']}")
            acc = num(res["retain_acc_match"])
            score[(key[0], key[1])].append(acc if not math.isnan(acc) else -num(res["retain_kl_match"]))
        else:
            score[(key[0], key[1])].append(None)
        # Point 0 is the base model: it must have (almost) no divergence from itself.
        for n, role in set_order:
            kl0 = metric(0, n, "kl")
            if not math.isnan(kl0) and abs(kl0) > 1e-4:
                fail(f"run {key}: KL(base || model) at step 0 on {n} is {kl0}, expected ~0")
    if matched_runs == 0:
        fail("no run reached the target: the matched-point logic was not exercised")

    for m in methods:
        lrs = sorted({lr for (meth, lr) in score if meth == m})
        if any(len(score[(m, lr)]) != a.seeds for lr in lrs):
            fail(f"method {m}: expected {a.seeds} seed(s) per rate")

        def rank(lr):
            vals = score[(m, lr)]
            got = [v for v in vals if v is not None]
            return (len(got), mean(got) if got else -math.inf, -lr)

        best = max(lrs, key=rank)
        chosen = {float(r["lr"]) for r in results if r["method"] == m and r["best_lr"] == "1"}
        if chosen != {best}:
            fail(f"method {m}: results choose rate {sorted(chosen)}, the traces give {best}")
    print(f"fidelity CSV ok: {len(runs)} runs of {len(methods)} methods, {matched_runs} matched, "
          f"{sum(len(p) for p in runs.values())} traced points, sets {[n for n, _ in set_order]}")


if __name__ == "__main__":
    main()
