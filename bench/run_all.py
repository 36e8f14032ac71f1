"""Benchmark (not a test): deeplab_tf against Model Garden and torchvision, in one run.

    python bench/run_all.py                      # everything; about 30 minutes on 2 cores
    python bench/run_all.py --quick              # fewer repeats, no OS8 training
    python bench/run_all.py --build_venvs        # first builds the peers' venvs (pip)
    python bench/run_all.py --only ours          # our rows only

Every measurement is its own process (peak memory = that process's max RSS). The peers run
from their own venvs with the scripts in --peers_dir (DeepLabV3 ResNet-101, Multi_Grid
1,2,4, ASPP 6/12/18 at OS16 and 12/24/36 at OS8, random weights): Model Garden with
`--act relu` (the paper's activation), torchvision with channels_last. The lower bound is
our multiply-adds (deeplab_tf.analysis.complexity) at the best conv throughput measured by
the peers' ceiling_tf.py in this run. Prints a Markdown table and writes it, with the
raw outputs, to --output_dir.

The peers' scripts are not part of this repository: --peers_dir names their folder
(default ../shared/peers beside the clone); without them the run stops at once, saying so.
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The peers' scripts are not part of the repository: --peers_dir names their folder;
# default ../shared/peers beside the clone, where the project's machines keep them.
DEFAULT_PEERS = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "peers"))
PEERS = DEFAULT_PEERS   # set by main() from --peers_dir
# What each run needs from --peers_dir: the lower bound always, the peers' rows unless
# --only ours.
CEILING_SCRIPTS = ("ceiling_tf.py",)
PEER_SCRIPTS = ("garden_deeplabv3.py", "torchvision_deeplabv3.py", "garden_input_pipeline.py")
VENVS = {"garden": ("/tmp/bench/garden", "tf-models-official==2.20.0"),
         "torch": ("/tmp/bench/torch", "torch==2.14.1 torchvision==0.29.1")}


def run(name, cmd, log_dir, env=None):
    """Runs cmd, returns (stdout text, peak RSS in MB, seconds)."""
    print(f"--- {name}: {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    with open(os.path.join(log_dir, f"{name}.log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                env={**os.environ, **(env or {})})
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        log.write(out)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        print(f"    failed with status {code}: see {log_dir}/{name}.log", flush=True)
        return None, None, None
    return out, usage.ru_maxrss / 1024, time.perf_counter() - start


SIZE = ["--size", "513"]   # --size of this run, passed to every script


def ours(task, os_, log_dir, *extra, env=None):
    name = f"ours_{task}_os{os_}{''.join(extra).replace('--', '_')}"
    name += "".join(f"_{k}{v}" for k, v in (env or {}).items())
    out, peak, _ = run(name, [sys.executable, os.path.join(HERE, "ours.py"), "--task", task,
                              "--output_stride", str(os_), *SIZE, *extra], log_dir, env=env)
    if out is None:
        return None
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    return {"s": result["median_s"], "mb": peak, "detail": result}


def peer(script, python, args, pattern, log_dir, name):
    out, peak, _ = run(name, [python, os.path.join(PEERS, script), *args, *SIZE,
                              "--out", os.path.join(log_dir, f"{name}.txt")], log_dir)
    if out is None:
        return None
    match = re.search(pattern + r".*?med=\s*([0-9.]+)s", out)
    return {"s": float(match.group(1)), "mb": peak} if match else None


def build_venvs():
    for path, packages in VENVS.values():
        if not os.path.exists(os.path.join(path, "bin", "python")):
            subprocess.run([sys.executable, "-m", "venv", path], check=True)
            subprocess.run([os.path.join(path, "bin", "pip"), "install", *packages.split()],
                           check=True)


def input_rates(log_dir, garden_python):
    rows = {}
    out, peak, _ = run("ours_input_pipeline", [sys.executable,
                       os.path.join(HERE, "input_pipeline.py"), "--skip_naive"], log_dir)
    if out:
        match = re.search(r"([0-9.]+) images/s", out)
        rows["ours"] = {"s": float(match.group(1)), "mb": peak} if match else None
    if garden_python:
        out, peak, _ = run("garden_input_pipeline", [garden_python, os.path.join(
            PEERS, "garden_input_pipeline.py"), os.path.join(log_dir, "garden_input.txt")],
            log_dir)
        # Its best setting (the script tries batch 2 and 16, several map parallelisms).
        rates = [float(r) for r in re.findall(r"parser train .*?img/s med=\s*([0-9.]+)", out or "")]
        rows["garden"] = {"s": max(rates), "mb": peak} if rates else None
    return rows


def lower_bound(log_dir, macs):
    out, _, _ = run("ceiling_tf", [sys.executable, os.path.join(PEERS, "ceiling_tf.py"),
                                   os.path.join(log_dir, "ceiling_tf.txt")], log_dir,
                    env={"BENCH_XLA": "0"})
    rates = [float(r) for r in re.findall(r"conv.*GFLOP/s med=\s*([0-9.]+)", out or "")]
    if not rates:
        return None, {}
    peak = max(rates)
    return peak, {os_: 2 * m / peak for os_, m in macs.items()}


def our_macs():
    """Nominal conv multiply-adds (billions) of our R-101 at 513x513, OS16 and OS8."""
    code = ("import deeplab_tf, json\n"
            "from deeplab_tf.analysis.complexity import summarize\n"
            "from deeplab_tf.modeling import build_deeplabv3\n"
            "print(json.dumps({s: summarize(build_deeplabv3(21, output_stride=s), 513, 513)"
            "['total']['macs'] / 1e9 for s in (16, 8)}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def fmt(cell, unit="s"):
    if cell is None:
        return "-"
    return f"{cell['s']:.0f} images/s" if unit == "rate" else f"{cell['s']:.3f} s"


def ratio(ours_cell, peer_cell, unit="s"):
    if not ours_cell or not peer_cell:
        return "-"
    r = ours_cell["s"] / peer_cell["s"] if unit == "rate" else peer_cell["s"] / ours_cell["s"]
    return f"{r:.2f}x"


def mem(cell):
    return f"{cell['mb']:.0f}" if cell and cell.get("mb") else "-"


def table(rows, bound):
    lines = ["| measurement | deeplab_tf | Model Garden | torchvision | speed-up vs MG | "
             "vs torchvision | peak MB (ours / MG / TV) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, unit, cells in rows:
        o, g, t = (cells.get(k) for k in ("ours", "garden", "torch"))
        lines.append(f"| {label} | {fmt(o, unit)} | {fmt(g, unit)} | {fmt(t, unit)} | "
                     f"{ratio(o, g, unit)} | {ratio(o, t, unit)} | {mem(o)} / {mem(g)} / "
                     f"{mem(t)} |")
    for os_, seconds in bound.items():
        lines.append(f"| lower bound, forward OS{os_} (MACs at peak conv rate) | "
                     f"{seconds:.3f} s | | | | | |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("all", "ours"), default="all")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no OS8 training")
    parser.add_argument("--build_venvs", action="store_true")
    parser.add_argument("--variants", default="",
                        help="only the variant rows whose label has one of these "
                             "comma-separated words (e.g. oneDNN,XLA)")
    parser.add_argument("--skip_variants", action="store_true",
                        help="skip the before/after rows of our optimizations")
    parser.add_argument("--size", type=int, default=513, help="image side (smoke runs)")
    parser.add_argument("--tasks", default="fwd,train,eval,input",
                        help="which rows: fwd, train, eval, input (comma-separated)")
    parser.add_argument("--output_dir", default=os.path.join(
        "/tmp/bench/results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S")))
    parser.add_argument("--peers_dir", default=None,
                        help="folder of the peers' scripts (garden_deeplabv3.py, "
                             "torchvision_deeplabv3.py, garden_input_pipeline.py, "
                             "ceiling_tf.py); not in this repository; default "
                             f"{DEFAULT_PEERS} if present")
    args = parser.parse_args()
    global PEERS
    PEERS = check_peers_dir(args.peers_dir, args.only)
    os.makedirs(args.output_dir, exist_ok=True)
    SIZE[1] = str(args.size)
    if args.build_venvs:
        build_venvs()
    peers = {}
    if args.only == "all":
        for key, (path, packages) in VENVS.items():
            python = os.path.join(path, "bin", "python")
            if os.path.exists(python):
                peers[key] = python
            else:
                print(f"no {key} venv at {path} (pip install {packages}; or --build_venvs)")
    reps = ["--reps", "3"] if args.quick else []
    d = args.output_dir
    g, t = peers.get("garden"), peers.get("torch")
    rows, tasks = [], args.tasks.split(",")
    for os_ in ((16, 8) if "fwd" in tasks else ()):
        cells = {"ours": ours("fwd", os_, d, *reps)}
        if g:
            cells["garden"] = peer("garden_deeplabv3.py", g, ["--os", str(os_), "--mode", "fwd",
                                   "--act", "relu"], "forward b1", d, f"garden_fwd_os{os_}")
        if t:
            cells["torch"] = peer("torchvision_deeplabv3.py", t, ["--os", str(os_), "--mode",
                                  "fwd", "--channels_last"], "forward b1", d,
                                  f"torchvision_fwd_os{os_}")
        rows.append((f"forward OS{os_}, batch 1, {args.size}x{args.size}", "s", cells))
    for os_ in (() if "train" not in tasks else (16,) if args.quick else (16, 8)):
        train_reps = ["--reps", "3"] if args.quick or os_ == 8 else []
        cells = {"ours": ours("train", os_, d, *train_reps)}
        if g:
            cells["garden"] = peer("garden_deeplabv3.py", g, ["--os", str(os_), "--mode",
                                   "train", "--act", "relu", *train_reps], "train step", d,
                                   f"garden_train_os{os_}")
        if t:
            cells["torch"] = peer("torchvision_deeplabv3.py", t, ["--os", str(os_), "--mode",
                                  "train", "--channels_last", *train_reps], "train step", d,
                                  f"torchvision_train_os{os_}")
        rows.append((f"training step OS{os_}, batch 2, {args.size}x{args.size}", "s", cells))
    if "eval" in tasks:
        rows.append((f"evaluation OS8, 6 scales + flip, one {args.size}x{args.size} image",
                     "s", {"ours": ours("eval", 8, d, "--reps", "2")}))
    if "input" in tasks:
        rows.append(("input pipeline, train mode, 513 crops", "rate", input_rates(d, g)))
    if not args.skip_variants:
        onednn = {"TF_ENABLE_ONEDNN_OPTS": "1"}
        for label, task, os_, flags, env in (
                ("oneDNN kernels forced (TF_ENABLE_ONEDNN_OPTS=1)", "fwd", 16, [], onednn),
                ("oneDNN kernels forced (TF_ENABLE_ONEDNN_OPTS=1)", "fwd", 8, [], onednn),
                ("oneDNN kernels forced (TF_ENABLE_ONEDNN_OPTS=1)", "train", 16, [], onednn),
                ("BN folded into the convs (--fold)", "fwd", 16, ["--fold"], None),
                ("all taps, dilated Conv2D (--native_atrous)", "fwd", 16, ["--native_atrous"],
                 None),
                ("all taps, dilated Conv2D (--native_atrous)", "fwd", 8, ["--native_atrous"],
                 None),
                ("atrous via SpaceToBatch (--keras_atrous)", "fwd", 8, ["--keras_atrous"], None),
                ("XLA jit_compile (--jit)", "fwd", 16, ["--jit"], None),
                ("XLA jit_compile (--jit)", "train", 16,
                 ["--jit", "--reps", "1", "--warm", "1"], None),
                ("mixed_bfloat16", "fwd", 16, ["--mixed_precision", "mixed_bfloat16"], None)):
            if args.variants and not any(k in label for k in args.variants.split(",")):
                continue
            name = "forward" if task == "fwd" else "training step"
            rows.append((f"ours {name} OS{os_}: {label}", "s",
                         {"ours": ours(task, os_, d, *reps, *flags, env=env)}))
    peak, bound = lower_bound(d, our_macs())
    header = (f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, {cpu_name()}; peak conv rate {peak or 0:.0f} GFLOP/s")
    if args.size != 513:
        bound = {}   # the MACs are those of 513x513
    text = f"{header}\n\n{table(rows, bound)}\n"
    with open(os.path.join(d, "table.md"), "w") as fh:
        fh.write(text)
    print("\n" + text)
    print(f"raw outputs: {d}")


def check_peers_dir(peers_dir, only="all"):
    """The peers' folder: `peers_dir`, or DEFAULT_PEERS when not given; exits with status
    1 and a message naming --peers_dir when it lacks a script this run needs."""
    folder = peers_dir or DEFAULT_PEERS
    needed = CEILING_SCRIPTS + (PEER_SCRIPTS if only == "all" else ())
    missing = [name for name in needed if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        where = (f"--peers_dir={peers_dir}" if peers_dir else
                 f"no --peers_dir given, and the default {DEFAULT_PEERS}")
        sys.exit(f"run_all.py: {where} lacks {', '.join(missing)}: the peers' benchmark "
                 f"scripts are not part of this repository; pass --peers_dir=FOLDER, the "
                 f"folder that holds {', '.join(needed)}")
    return folder


def cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            info = fh.read()
        name = re.search(r"model name\s*:\s*(.*)", info).group(1).strip()
        flags = re.search(r"flags\s*:\s*(.*)", info).group(1).split()
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
        return f"{name} ({', '.join(isa)})"
    except (OSError, AttributeError):
        return "unknown CPU"


if __name__ == "__main__":
    main()
