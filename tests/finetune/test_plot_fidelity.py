#!/usr/bin/env python3
"""Tests examples/finetune/plot_fidelity.py on crafted fidelity-protocol CSV files.

usage: test_plot_fidelity.py PATH/TO/plot_fidelity.py

Three methods at two learning rates and two seeds each; one new-task set, a
retain set with accuracy, one without (loss and KL only) and a contradicted
set; one method never reaches the match target. Checks that the plots are
complete PNGs of a plausible size and that bad inputs exit with status 2
and leave no PNG behind.

Without matplotlib: exit 77 (CTest's SKIP_RETURN_CODE) with "SKIP: ...", or
with CI=true exit 1 with "FAIL: ...", so CI never passes without running it
(the rule of tests/support/python_env.sh).
"""
import csv
import math
import os
import struct
import subprocess
import sys
import tempfile
import unittest

TRACES_HEADER = "method,lr,seed,step,step_lr,train_loss,set,role,accuracy,loss,kl"
RESULTS_HEADER = ("method,lr,seed,params,state_bytes,ms_per_step,peak_rss_mib,match_step,over_step,new_match,"
                  "retain_acc_match,retain_loss_match,retain_kl_match,contra_acc_match,retain_acc_over,"
                  "retain_loss_over,retain_kl_over,contra_acc_over,best_lr")
TARGET, OVERTRAIN = 0.9, 3
STEPS = range(0, 121, 10)
# method -> (learning rates, final new-task accuracy, speed of learning, forgetting per step)
METHODS = {
    "full": ((1e-4, 3e-4), 0.98, 0.06, 0.004),
    "lora": ((1e-4, 1e-3), 0.80, 0.05, 0.002),  # levels off below the target: no match
    "s2ft": ((1e-4, 1e-3), 0.97, 0.1, 0.0015),
}
SETS = [("qa", "new", True), ("facts", "retain", True), ("prose", "retain", False), ("flips", "contradicted", True)]

PLOT = None  # the script under test, from the command line
MPL_DIR = None  # matplotlib's cache folder for the runs (not the user's home)


def fmt(v):
    # The protocol writes empty fields for values not measured.
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}"


def metrics(method, lr, seed, step):
    """{set: (accuracy or None, loss, kl)} of one crafted run at one step, rounded as written."""
    _, top, speed, forget = METHODS[method]
    scale = lr / METHODS[method][0][0]  # a higher rate learns and forgets faster
    jitter = 0.01 * (seed - 1.5)
    learnt = 1 - math.exp(-speed * min(scale, 3) * step)
    drift = forget * scale ** 0.5 * step
    acc_new = 0.2 + (top - 0.2) * learnt + (jitter if step else 0)
    out = {
        "qa": (acc_new, 3.0 - 2.5 * learnt, 0.0),
        "facts": (max(0.0, 0.85 - drift + jitter / 2), 1.2 + drift, drift * 0.8),
        "prose": (None, 2.0 + drift * 1.5, drift * 1.2),
        "flips": (0.1 + 0.6 * learnt, 2.5 - learnt, 0.3 * learnt),
    }
    return {k: tuple(None if v is None else float(fmt(v)) for v in t) for k, t in out.items()}


def write_case(folder, seeds=(1, 2)):
    """Writes traces.csv and results.csv as the protocol would, with its match rule and choice of rate."""
    traces, runs = [], []
    for method, (lrs, *_rest) in METHODS.items():
        for lr in lrs:
            for seed in seeds:
                pts = {step: metrics(method, lr, seed, step) for step in STEPS}
                for step, sets in pts.items():
                    for name, role, _ in SETS:
                        a, l, k = sets[name]
                        traces.append([method, fmt(lr), seed, step, fmt(lr if step else 0.0),
                                       fmt(3.0 - step / 40), name, role, fmt(a), fmt(l), fmt(k)])
                match = next((s for s in STEPS if s > 0 and pts[s]["qa"][0] >= TARGET), -1)
                over = next((s for s in STEPS if match > 0 and s >= OVERTRAIN * match), -1)
                runs.append((method, lr, seed, match, over, pts))

    def retention(p):
        return ((p["facts"][0]), (p["facts"][1] + p["prose"][1]) / 2, (p["facts"][2] + p["prose"][2]) / 2)

    # Per method: the rate with the most matched runs, then the best retained accuracy at match.
    best = {}
    for method, (lrs, *_rest) in METHODS.items():
        def score(lr):
            rs = [r for r in runs if r[0] == method and r[1] == lr]
            accs = [retention(r[5][r[3]])[0] for r in rs if r[3] > 0]
            return (len(accs), sum(accs) / len(accs) if accs else 0.0)
        best[method] = max(lrs, key=score)

    results = []
    for method, lr, seed, match, over, pts in runs:
        at_match = retention(pts[match]) if match > 0 else (None,) * 3
        at_over = retention(pts[over]) if over > 0 else (None,) * 3
        def contra(step):
            return pts[step]["flips"][0] if step > 0 else None
        results.append([method, fmt(lr), seed, 1000, 8000, "1.5", "50", match, over,
                        fmt(pts[match]["qa"][0] if match > 0 else None), *map(fmt, at_match), fmt(contra(match)),
                        *map(fmt, at_over), fmt(contra(over)), int(lr == best[method])])
    write_rows(os.path.join(folder, "traces.csv"), TRACES_HEADER, traces)
    write_rows(os.path.join(folder, "results.csv"), RESULTS_HEADER, results)


def write_rows(path, header, rows):
    with open(path, "w", newline="") as f:
        f.write(header + "\n")
        csv.writer(f, lineterminator="\n").writerows(rows)


def png_size(path):
    """(width, height) from a complete PNG's IHDR; fails the test on anything else."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"{path}: no PNG signature")
    if data[12:16] != b"IHDR":
        raise AssertionError(f"{path}: the first chunk is not IHDR")
    # A complete file ends with the empty IEND chunk (length 0, type, CRC).
    if data[-12:] != b"\x00\x00\x00\x00IEND\xaeB`\x82":
        raise AssertionError(f"{path}: no IEND chunk at the end (truncated?)")
    return struct.unpack(">II", data[16:24])


def run_plot(*args):
    # -I: only the interpreter's own and Debian's packages (no user site, no PYTHONPATH), as CTest runs it.
    env = dict(os.environ, MPLCONFIGDIR=MPL_DIR)
    return subprocess.run([sys.executable, "-I", PLOT, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120)


class PlotFidelity(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="plot-fidelity-")
        self.dir = self._tmp.name
        write_case(self.dir)

    def tearDown(self):
        self._tmp.cleanup()

    def edit_traces(self, change):
        """Rewrites traces.csv with change(data rows)."""
        path = os.path.join(self.dir, "traces.csv")
        with open(path, newline="") as f:
            rows = list(csv.reader(f))[1:]
        write_rows(path, TRACES_HEADER, change(rows))

    def assert_plotted(self, proc, path):
        self.assertEqual(proc.returncode, 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        self.assertEqual(proc.stdout.strip(), str(path))
        width, height = png_size(path)
        # Two panels side by side: wider than tall, and big enough to read.
        self.assertTrue(800 <= width <= 4000 and 400 <= height <= 2000 and width > height, (width, height))
        self.assert_no_leftovers(path)

    def assert_no_leftovers(self, keep=None):
        """No temporary file, and no PNG other than `keep`."""
        left = [n for n in os.listdir(self.dir)
                if (n.endswith(".png") or n.startswith(".frontier-")) and os.path.join(self.dir, n) != str(keep)]
        self.assertEqual(left, [])

    def assert_rejected(self, proc, *words):
        self.assertEqual(proc.returncode, 2, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
        for w in words:
            self.assertIn(w, proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        self.assert_no_leftovers()

    def test_default(self):
        out = os.path.join(self.dir, "frontier.png")
        self.assert_plotted(run_plot(self.dir), out)

    def test_loss_and_kl(self):
        out = os.path.join(self.dir, "kl.png")
        self.assert_plotted(run_plot(self.dir, "--x", "loss", "--y", "kl", "-o", out, "--title", "loss vs KL"), out)

    def test_retain_loss_and_target(self):
        out = os.path.join(self.dir, "frontier.png")
        self.assert_plotted(run_plot(self.dir, "--y", "loss", "--target", "0.9"), out)

    def test_single_seed(self):
        write_case(self.dir, seeds=(7,))
        self.assert_plotted(run_plot(self.dir), os.path.join(self.dir, "frontier.png"))

    def test_replaces_existing_png(self):
        out = os.path.join(self.dir, "frontier.png")
        with open(out, "wb") as f:
            f.write(b"old")
        self.assert_plotted(run_plot(self.dir), out)

    def test_no_accuracy_falls_back(self):
        # No accuracy anywhere: x falls back to the new set's loss, y to KL.
        self.edit_traces(lambda rows: [r[:8] + [""] + r[9:] for r in rows])
        self.assert_plotted(run_plot(self.dir), os.path.join(self.dir, "frontier.png"))

    def test_wrong_header(self):
        path = os.path.join(self.dir, "results.csv")
        with open(path) as f:
            lines = f.read().splitlines(True)
        with open(path, "w") as f:
            f.write(lines[0].replace("match_step", "matched_at"))
            f.writelines(lines[1:])
        self.assert_rejected(run_plot(self.dir), "results.csv", "header")

    def test_missing_dir(self):
        missing = os.path.join(self.dir, "nowhere")
        self.assert_rejected(run_plot(missing), "nowhere", "no such directory")
        self.assertFalse(os.path.exists(missing))

    def test_missing_file(self):
        os.unlink(os.path.join(self.dir, "traces.csv"))
        self.assert_rejected(run_plot(self.dir), "traces.csv", "no such file")

    def test_empty_files(self):
        open(os.path.join(self.dir, "traces.csv"), "w").close()
        self.assert_rejected(run_plot(self.dir), "traces.csv", "empty")
        write_case(self.dir)
        write_rows(os.path.join(self.dir, "results.csv"), RESULTS_HEADER, [])
        self.assert_rejected(run_plot(self.dir), "results.csv", "no data rows")

    def test_bad_number(self):
        def spoil(rows):
            rows[2][9] = "lots"  # the loss of the third data row: line 4 of the file
            return rows
        self.edit_traces(spoil)
        self.assert_rejected(run_plot(self.dir), "traces.csv:4", "lots")


def main():
    global PLOT, MPL_DIR
    if len(sys.argv) != 2:
        print("usage: test_plot_fidelity.py PATH/TO/plot_fidelity.py", file=sys.stderr)
        return 2
    PLOT = sys.argv[1]
    probe = subprocess.run([sys.executable, "-I", "-c", "import matplotlib"], capture_output=True)
    if probe.returncode != 0:
        msg = f"{sys.executable} cannot import matplotlib: install Debian's python3-matplotlib (scripts/setup-debian.sh)"
        if os.environ.get("CI") == "true":
            print(f"FAIL: {msg}")
            return 1
        print(f"SKIP: {msg}")
        return 77
    with tempfile.TemporaryDirectory(prefix="plot-fidelity-mpl-") as MPL_DIR:
        result = unittest.main(argv=[sys.argv[0], "-v"], exit=False).result
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
