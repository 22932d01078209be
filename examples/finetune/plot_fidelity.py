#!/usr/bin/env python3
"""Draws the learning-vs-retention frontier of a fidelity-protocol run.

usage: plot_fidelity.py DIR [-o OUT.png] [--x accuracy|loss] [--y accuracy|kl|loss]
                        [--title TEXT] [--target X]

Reads DIR/traces.csv and DIR/results.csv (written by s2ft-finetune's fidelity
protocol) and writes DIR/frontier.png (or OUT.png), then prints its path.

Left panel: per method, at the learning rate the protocol chose for it, the
mean over seeds of new-task learning (x) against retention (y) at every traced
step, with the matched-learning point (star) and the point after over-training
('x'). Right panel: retention at match against retention after over-training.

Exit status 2 when an input is missing or malformed (the message names the
file and the problem); the output is replaced only once it is complete.
"""
import argparse
import csv
import math
import os
import statistics
import sys
import tempfile

TRACES_HEADER = ["method", "lr", "seed", "step", "step_lr", "train_loss", "set", "role", "accuracy", "loss", "kl"]
RESULTS_HEADER = ["method", "lr", "seed", "params", "state_bytes", "ms_per_step", "peak_rss_mib", "match_step",
                  "over_step", "new_match", "retain_acc_match", "retain_loss_match", "retain_kl_match",
                  "contra_acc_match", "retain_acc_over", "retain_loss_over", "retain_kl_over", "contra_acc_over",
                  "best_lr"]
ROLES = ("new", "retain", "contradicted")
METRICS = ("accuracy", "loss", "kl")
# results.csv names the retention columns by short metric names.
RESULT_METRIC = {"accuracy": "acc", "loss": "loss", "kl": "kl"}
NAN = float("nan")


class InputError(Exception):
    """A problem with the input files or the command line: exit status 2."""


def read_csv(path, header):
    """The rows of a CSV file with exactly `header`, as (line number, dict) pairs."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    try:
        # utf-8-sig: a spreadsheet that re-saved the file may have added a BOM.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            first = next(reader, None)
            if first is None:
                raise InputError(f"{path}: empty file (expected the header line {','.join(header)})")
            if [h.strip() for h in first] != header:
                raise InputError(f"{path}: bad header: got '{','.join(first)}', expected '{','.join(header)}'")
            rows = []
            for fields in reader:
                if not fields:  # a blank line, e.g. at the end
                    continue
                if len(fields) != len(header):
                    raise InputError(f"{path}:{reader.line_num}: {len(fields)} fields, expected {len(header)}")
                rows.append((reader.line_num, dict(zip(header, (v.strip() for v in fields)))))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read: {e}") from e
    if not rows:
        raise InputError(f"{path}: no data rows after the header")
    return rows


def number(row, field, where):
    """A float field; an empty one is NaN (not measured)."""
    text = row[field]
    if text == "":
        return NAN
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {field} is not a number: '{text}'") from None


def integer(row, field, where):
    try:
        return int(row[field])
    except ValueError:
        raise InputError(f"{where}: {field} is not an integer: '{row[field]}'") from None


def finite(values):
    return [v for v in values if not math.isnan(v)]


def mean(values):
    v = finite(values)
    return sum(v) / len(v) if v else NAN


def sd(values):
    """Sample sd over seeds; 0 for a single seed (nothing to spread)."""
    v = finite(values)
    return statistics.stdev(v) if len(v) > 1 else 0.0


def run_key(row, where):
    # lr as a float: the same rate written two ways is still one run.
    return (row["method"], number(row, "lr", where), integer(row, "seed", where))


class Data:
    """Both CSV files, parsed and cross-checked."""

    def __init__(self, folder):
        if not os.path.isdir(folder):
            raise InputError(f"{folder}: no such directory")
        tpath = os.path.join(folder, "traces.csv")
        rpath = os.path.join(folder, "results.csv")
        # Both headers are checked before any content, so a wrong file is named first.
        traces = read_csv(tpath, TRACES_HEADER)
        results = read_csv(rpath, RESULTS_HEADER)

        self.roles = {}  # set name -> role, in first-seen order
        self.points = {}  # run key -> step -> set name -> {metric: value}
        for line, row in traces:
            where = f"{tpath}:{line}"
            name, role = row["set"], row["role"]
            if role not in ROLES:
                raise InputError(f"{where}: role '{role}' is not one of {', '.join(ROLES)}")
            if self.roles.setdefault(name, role) != role:
                raise InputError(f"{where}: set '{name}' has role '{role}' here, '{self.roles[name]}' before")
            step = integer(row, "step", where)
            sets = self.points.setdefault(run_key(row, where), {}).setdefault(step, {})
            if name in sets:
                raise InputError(f"{where}: a second row for set '{name}' at step {step} of this run")
            sets[name] = {m: number(row, m, where) for m in METRICS}

        self.runs = []  # results.csv rows with parsed fields, in file order
        for line, row in results:
            where = f"{rpath}:{line}"
            if row["best_lr"] not in ("0", "1"):
                raise InputError(f"{where}: best_lr must be 0 or 1, got '{row['best_lr']}'")
            run = {"key": run_key(row, where), "best": row["best_lr"] == "1",
                   "match_step": integer(row, "match_step", where), "over_step": integer(row, "over_step", where),
                   "new_match": number(row, "new_match", where)}
            for m, short in RESULT_METRIC.items():
                run[m + "_match"] = number(row, f"retain_{short}_match", where)
                run[m + "_over"] = number(row, f"retain_{short}_over", where)
            self.runs.append(run)

        self.new_sets = [s for s, r in self.roles.items() if r == "new"]
        self.retain_sets = [s for s, r in self.roles.items() if r == "retain"]
        if not self.new_sets:
            raise InputError(f"{tpath}: no evaluation set has role 'new'")
        if not self.retain_sets:
            raise InputError(f"{tpath}: no evaluation set has role 'retain'")
        if not any(r["best"] for r in self.runs):
            raise InputError(f"{rpath}: no row has best_lr 1 (no chosen learning rate to plot)")
        # The protocol matches on one new-task set; with several, the first is the one plotted.
        self.new_set = self.new_sets[0]

    def sets_with(self, names, metric):
        """The sets among `names` with at least one value of `metric`."""
        return [s for s in names
                if any(not math.isnan(sets[s][metric]) for run in self.points.values()
                       for sets in run.values() if s in sets)]

    def xy(self, key, step, xm, ym):
        """(new-task metric, mean retention metric) of one run at one step; NaN where not measured."""
        sets = self.points.get(key, {}).get(step)
        if sets is None:
            return NAN, NAN
        x = sets[self.new_set][xm] if self.new_set in sets else NAN
        return x, mean([sets[s][ym] for s in self.retain_sets if s in sets])

    def match_metric(self):
        """Which new-task metric the match rule used: the one new_match equals in the traces."""
        votes = {"accuracy": 0, "loss": 0}
        for r in self.runs:
            if r["match_step"] < 0 or math.isnan(r["new_match"]):
                continue
            sets = self.points.get(r["key"], {}).get(r["match_step"], {})
            for m in votes:
                v = sets.get(self.new_set, {}).get(m, NAN)
                if not math.isnan(v) and math.isclose(v, r["new_match"], rel_tol=1e-6, abs_tol=1e-9):
                    votes[m] += 1
        best = max(votes, key=votes.get)
        return best if votes[best] else None

    def infer_target(self, metric):
        """The match target, if the traces pin it down to one round number.

        Every traced point before a run's match step missed the target and the
        match point met it, so the target lies between the two; the roundest
        number in that interval is taken, but only if it is the only one
        that round (else the traced points are too sparse to tell).
        """
        missed, met = [], []
        for r in self.runs:
            if r["match_step"] < 0 or math.isnan(r["new_match"]):
                continue
            met.append(r["new_match"])
            for step, sets in self.points.get(r["key"], {}).items():
                if 0 < step < r["match_step"] and self.new_set in sets:
                    missed.append(sets[self.new_set][metric])
        missed = finite(missed)
        if not met:
            return None
        if metric == "accuracy":  # accuracy >= target: target in (max missed, min met]
            lo, hi = (max(missed) if missed else -math.inf), min(met)
            inside = lambda t: lo < t <= hi + 1e-12
        else:  # loss <= target: target in [max met, min missed)
            lo, hi = max(met), (min(missed) if missed else math.inf)
            inside = lambda t: lo - 1e-12 <= t < hi
        if math.isinf(lo) or math.isinf(hi):  # a one-sided bound admits every round number
            return None
        for grid in (0.1, 0.05, 0.01, 0.005, 0.001):
            candidates = [k * grid for k in range(math.floor(lo / grid), math.ceil(hi / grid) + 1)
                          if inside(k * grid)]
            if len(candidates) == 1:
                return round(candidates[0], 6)
            if len(candidates) > 1:
                return None
        return None


def mean_curve(data, keys, xm, ym):
    """The mean over seeds of (x, y) per traced step, in step order.

    Steps traced in every seed are used; where the seeds share fewer than two
    (e.g. one run failed early), each step is averaged over the seeds that have it.
    """
    per_seed = []
    for key in keys:
        pts = {}
        for step in data.points.get(key, {}):
            x, y = data.xy(key, step, xm, ym)
            if not (math.isnan(x) or math.isnan(y)):
                pts[step] = (x, y)
        if pts:
            per_seed.append(pts)
    if not per_seed:
        return []
    steps = set.intersection(*(set(p) for p in per_seed))
    if len(steps) < 2:
        steps = set.union(*(set(p) for p in per_seed))
    return [(step, mean([p[step][0] for p in per_seed if step in p]), mean([p[step][1] for p in per_seed if step in p]))
            for step in sorted(steps)]


def summarize(data, xm, ym, match_metric):
    """Per method (in results.csv order): its chosen runs, mean curve and match / over points."""
    methods = {}
    for r in data.runs:
        if r["best"]:
            methods.setdefault(r["key"][0], []).append(r)
    for method in dict.fromkeys(r["key"][0] for r in data.runs):
        if method not in methods:
            print(f"plot_fidelity: {method}: no row with best_lr 1; not plotted", file=sys.stderr)
    out = []
    for method, runs in methods.items():
        keys = [r["key"] for r in runs]
        if not any(k in data.points for k in keys):
            print(f"plot_fidelity: {method}: no traces of its chosen runs in traces.csv", file=sys.stderr)
        matched = [r for r in runs if r["match_step"] >= 0]
        overs = [r for r in runs if r["over_step"] >= 0]

        def x_at(r, step):
            # new_match is the x value itself when x is the metric the match was made on.
            if step == r["match_step"] and xm == match_metric and not math.isnan(r["new_match"]):
                return r["new_match"]
            return data.xy(r["key"], step, xm, ym)[0]

        def y_at(r, point):
            y = r[f"{ym}_{point}"]
            return y if not math.isnan(y) else data.xy(r["key"], r[f"{point}_step"], xm, ym)[1]

        out.append({
            "method": method, "lrs": sorted({k[1] for k in keys}), "seeds": len(runs), "matched": len(matched),
            "curve": mean_curve(data, keys, xm, ym),
            "match": (mean([x_at(r, r["match_step"]) for r in matched]), mean([y_at(r, "match") for r in matched]))
                     if matched else None,
            "over": (mean([x_at(r, r["over_step"]) for r in overs]), mean([y_at(r, "over") for r in overs]))
                    if overs else None,
            "retain_match": finite([y_at(r, "match") for r in matched]),
            "retain_over": finite([y_at(r, "over") for r in overs]),
        })
    return out


def choose_metrics(data, args):
    """The x and y metrics: as asked, with the fallbacks for sets that have no accuracy."""
    xm = args.x or "accuracy"
    if xm == "accuracy" and not data.sets_with([data.new_set], "accuracy"):
        if args.x:
            print(f"plot_fidelity: set '{data.new_set}' has no accuracy; plotting its loss", file=sys.stderr)
        xm = "loss"
    ym = args.y or "accuracy"
    if ym == "accuracy" and not data.sets_with(data.retain_sets, "accuracy"):
        if args.y:
            print("plot_fidelity: no retain set has accuracy; plotting KL", file=sys.stderr)
        ym = "kl"
    if not data.sets_with([data.new_set], xm):
        raise InputError(f"traces.csv: set '{data.new_set}' has no {xm} values")
    if not data.sets_with(data.retain_sets, ym):
        raise InputError(f"traces.csv: no retain set has {ym} values")
    return xm, ym


def labels(data, xm, ym):
    if xm == "accuracy":
        xlabel = f"new-task accuracy (held-out: {data.new_set})"
    else:
        xlabel = f"new-task loss (held-out: {data.new_set}), nats; axis reversed: more learning \u2192"
    names = ", ".join(data.sets_with(data.retain_sets, ym))
    if ym == "accuracy":
        ylabel = f"retention: mean accuracy on {names}"
    elif ym == "kl":
        ylabel = f"retention: KL(base || tuned) on {names},\nnats (lower is better)"
    else:
        ylabel = f"retention: mean loss on {names},\nnats (lower is better)"
    return xlabel, ylabel


def plot(data, summaries, xm, ym, target, title, path):
    import matplotlib
    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    lower_better_x, lower_better_y = xm != "accuracy", ym != "accuracy"
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 6), gridspec_kw={"width_ratios": [3, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    xlabel, ylabel = labels(data, xm, ym)

    handles = []
    for i, s in enumerate(summaries):
        color = colors[i % len(colors)]
        lr = ", ".join(f"{v:g}" for v in s["lrs"])
        label = f"{s['method']} (lr {lr}, {s['seeds']} seed{'s' if s['seeds'] != 1 else ''})"
        if s["matched"] == 0:
            label += " (no match)"
        elif s["matched"] < s["seeds"]:
            label += f" ({s['matched']}/{s['seeds']} matched)"
        if s["curve"]:
            _, xs, ys = zip(*s["curve"])
            ax.plot(xs, ys, "-o", color=color, markersize=4, linewidth=1.5, alpha=0.85)
        handles.append(Line2D([], [], color=color, marker="o", markersize=4, label=label))
        if s["match"]:
            ax.plot(*s["match"], marker="*", markersize=18, color=color, markeredgecolor="black", zorder=5)
        if s["over"]:
            ax.plot(*s["over"], marker="x", markersize=11, markeredgewidth=2.5, color=color, zorder=5)
            if s["match"]:
                ax.plot(*zip(s["match"], s["over"]), ":", color=color, linewidth=1.5)
    if target is not None:
        ax.axvline(target, color="grey", linestyle="--", linewidth=1)
        handles.append(Line2D([], [], color="grey", linestyle="--", label=f"match target {target:g}"))
    handles += [Line2D([], [], linestyle="", marker="*", markersize=14, color="lightgrey", markeredgecolor="black",
                       label="match point (mean over seeds)"),
                Line2D([], [], linestyle=":", marker="x", markersize=9, markeredgewidth=2, color="grey",
                       label="after over-training")]
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if lower_better_x:
        ax.invert_xaxis()
    if lower_better_y:
        ax.invert_yaxis()
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.9)
    ax.set_title("learning vs retention at each method's chosen learning rate\n"
                 "(mean over seeds, traced steps in order)", fontsize=10)

    # Right: what training on past the match costs, per method.
    ends = []
    for i, s in enumerate(summaries):
        if not (s["retain_match"] and s["retain_over"]):
            continue
        x, y = mean(s["retain_match"]), mean(s["retain_over"])
        ends += [x, y]
        ax2.errorbar(x, y, xerr=sd(s["retain_match"]), yerr=sd(s["retain_over"]), fmt="o", markersize=7,
                     capsize=4, color=colors[i % len(colors)])
        ax2.annotate(s["method"], (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    missing = [s["method"] for s in summaries if not (s["retain_match"] and s["retain_over"])]
    if ends:
        lo, hi = min(ends), max(ends)
        pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 0.05
        ax2.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color="grey", linewidth=1)
        note = "below the diagonal: more forgetting\nfrom over-training"
        if lower_better_y:
            note += " (axes reversed:\nlower values up and right)"
        ax2.text(0.97, 0.03, note, transform=ax2.transAxes,
                 ha="right", va="bottom", fontsize=8, color="grey")
    else:
        ax2.text(0.5, 0.5, "no method reached both points", transform=ax2.transAxes, ha="center", va="center")
    if missing:
        ax2.text(0.03, 0.97, "not shown (no match or over-training point): " + ", ".join(missing),
                 transform=ax2.transAxes, ha="left", va="top", fontsize=8, color="grey", wrap=True)
    what = {"accuracy": "mean accuracy", "kl": "KL(base || tuned), nats", "loss": "mean loss, nats"}[ym]
    ax2.set_xlabel(f"retention at match ({what})")
    ax2.set_ylabel(f"retention after over-training ({what})")
    if lower_better_y:  # better retention up and to the right on both axes
        ax2.invert_xaxis()
        ax2.invert_yaxis()
    ax2.grid(True, alpha=0.3)
    ax2.set_title("retention at match vs after over-training\n(mean \u00b1 sd over seeds)", fontsize=10)

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
    plt.close(fig)


def save(fig, path):
    """Writes to a temporary file beside `path`, then renames it: never a partial PNG under the final name."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".frontier-", suffix=".png.tmp", dir=folder)
    os.close(fd)
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        fig.savefig(tmp, format="png", dpi=120)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv):
    p = argparse.ArgumentParser(description="Draws the learning-vs-retention frontier of a fidelity-protocol run "
                                            "from DIR/traces.csv and DIR/results.csv.")
    p.add_argument("dir", metavar="DIR", help="the folder holding traces.csv and results.csv")
    p.add_argument("-o", "--output", metavar="OUT.png", help="the PNG to write (default DIR/frontier.png)")
    p.add_argument("--x", choices=("accuracy", "loss"),
                   help="new-task metric (default accuracy; loss when the new set has no accuracy)")
    p.add_argument("--y", choices=("accuracy", "kl", "loss"),
                   help="retention metric (default accuracy; KL when no retain set has accuracy)")
    p.add_argument("--title", help="a title over both panels")
    p.add_argument("--target", type=float, metavar="X",
                   help="draw the match target at x = X (default: inferred from the traces where possible)")
    args = p.parse_args(argv)
    path = args.output or os.path.join(args.dir, "frontier.png")

    try:
        data = Data(args.dir)
        xm, ym = choose_metrics(data, args)
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise InputError(f"{path}: its folder does not exist")
        match_metric = data.match_metric()
        target = args.target
        if target is None and match_metric == xm:
            target = data.infer_target(xm)
        summaries = summarize(data, xm, ym, match_metric)
    except InputError as e:
        print(f"plot_fidelity: {e}", file=sys.stderr)
        return 2

    try:
        import matplotlib  # noqa: F401  (checked here for a clear message; plot() imports it for use)
    except ImportError:
        print("plot_fidelity: matplotlib is missing: install Debian's python3-matplotlib "
              "(scripts/setup-debian.sh)", file=sys.stderr)
        return 1
    try:
        plot(data, summaries, xm, ym, target, args.title, path)
    except OSError as e:
        print(f"plot_fidelity: {path}: cannot write: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
