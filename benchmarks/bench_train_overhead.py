"""Training overhead of the plugin, per optimizer step and per whole command, with 95% intervals.

Shapes like real reasoning SFT on CPU: a random Qwen3-architecture model with the real Qwen3
tokenizer and its full 151,936-row vocabulary (hidden 256, 4 layers by default), samples of
1024-2048 tokens that are mostly one long `<think>` block (a quarter are direct answers with the
empty `<think>\n\n</think>` Qwen3 renders), batch 1 x accumulation 8 and logging every 10 steps as
in the recipes (`examples/yaml/`), `overwrite_cache: true`.

Arms (each a fresh `llamafactory-cli train` process; "off" has no `thinkplugin:` block):
  off, full (the block with nothing to do: an A/A check of the method), full_w0.5
  (`think_loss: full`, `think_loss_weight: 0.5`), mask_empty, mask_reasoning, and
  mask_empty_span (`mask_empty` with `log_span_loss: true`; against `mask_empty` it is the cost
  of span logging alone). Unless named, `log_span_loss` is false.

Timing. LF's trainer_log.jsonl rounds `elapsed_time` to whole seconds and trainer_state.json has
no timestamps, so neither resolves 2%. Instead the benchmark launches LF through a small launcher
(written to the temp dir, identical for every arm, the plugin untouched) that adds one
TrainerCallback and then calls `llamafactory.cli.main()`, exactly what the `llamafactory-cli`
entry point calls. The callback records `time.perf_counter()` at each `on_step_end`; the time
between two of them is the whole cost of one optimizer step: fetching and collating the
accumulation batches (HF's Trainer prefetches them before `on_step_begin`, so step_begin..step_end
would miss the collator), forward/backward with the loss, the optimizer, and the previous step's
logging (where `loss_think` / `loss_answer` are reported). The first `--warmup` steps are dropped.

Design. Rounds: in each round every arm runs once, in an order rotated by one arm per round, so
slow drifts of a shared machine hit all arms alike (off, A, B, ... then A, B, ..., off). For an
arm X, the per-step ratio is mean step time of X / mean step time of off. Two 95% intervals:
  * bootstrap: resample rounds, then within each resampled process its steps (2,000 draws), ratio
    of pooled means, percentile interval. With one round this reduces to a bootstrap over steps
    and ignores process-to-process variation.
  * t: a t-interval on the per-round log-ratios (needs >= 2 rounds; wide with few rounds).
The whole command's wall time (model load, dataset tokenisation, training, final save) gets the
same per-round ratio and t-interval.

--paired (per-step cost only; resolves what process-to-process noise hides). Each arm runs in one
process with its block, and its optimizer steps come in pairs, one "on" and one "off" in a seeded
random order: an off step's batches come from LF's own collator, so they carry no span map and the
plugin's trainer passes them to LF's compute_loss and token count unchanged. So an off step runs
exactly LF's per-step code, next to an on step in the same process and memory state. The ratio is
the mean time per token of on steps over off steps (pairs past the warm-up), with a bootstrap over
pairs and a t-interval on the per-pair log-ratios. Arm `aa` keeps the block but runs LF's collator on
every step: an A/A check. Logging steps fall on either side at random, so span logging is measured at
the recipes' rate. Batches are assigned to steps by collator call; accelerate collates one batch ahead,
so the few hundred microseconds of collator work shift by one batch between neighbouring intervals
(the compute is exact). Needs `dataloader_num_workers: 0` (the config sets it).

Memory. On CPU, glibc returns each freed logits-sized buffer (1024 x 151,936 fp32 = 0.6 GB) to the
kernel and page-faults it back in the next step: measured, that was about 3/4 of a step (9-12 s vs
2-3 s per 1024-token sample) and most of its variance. `--malloc heap` (the default) sets
MALLOC_MMAP_MAX_=0 and a huge MALLOC_TRIM_THRESHOLD_ for every arm alike, so freed blocks are reused;
a GPU's caching allocator does the same. `--malloc default` measures without.

Threads. With --threads equal to the cores, any other work on the machine stalls one of torch's threads
and so the whole step: on 2 cores the A/A arm's per-pair log-ratio spread was 0.169 with 2 threads and
0.073 with 1 (steps 4.6 vs 8.0 s), so one thread resolves a given width in about a third of the time.
Pinning. `--cpus 0` pins the script and every arm's process to core 0 (sched_setaffinity, inherited by
the children): the scheduler no longer moves the one torch thread between cores and their caches. Pinned,
the per-pair spread fell from 0.073 to 0.016-0.038, with a second pinned benchmark on the other core; two
pinned runs on two cores measure two sets of arms at once.
Warm-up. The first logging step pays one-time allocations of the span loss (one 12 s step where the
others take 7-8 s); the default warm-up (--logging-steps) drops it from the per-step figures, which are
the steady state. The whole command (process mode) includes it.

    # full size (6 arms x 3 rounds of 100 steps of 8 samples up to 2048 tokens: ~2 min a step on
    # 2 cores, days in all; meant for a quiet many-core machine)
    python benchmarks/bench_train_overhead.py --steps 100 --repeats 3
    # per-step cost, paired, one pinned thread (recorded in docs/benchmarks.md; ~18 min per arm on 2 cores)
    python benchmarks/bench_train_overhead.py --paired --min-len 1024 --max-len 1024 --accum 2 --steps 160 \\
        --warmup 10 --repeats 1 --threads 1 --cpus 0 --arms full_w0.5,mask_reasoning
    # whole command at 100 steps, alternating processes (recorded; ~6 min per process)
    python benchmarks/bench_train_overhead.py --min-len 1024 --max-len 1024 --accum 1 --steps 100 \\
        --repeats 3 --threads 1 --cpus 1 --arms off,mask_empty_span,full_w0.5
    # process-alternating reduced run (30 min on 2 busy cores, default malloc; did not resolve 2%)
    python benchmarks/bench_train_overhead.py --min-len 1024 --max-len 1024 --accum 1 --steps 9 \\
        --warmup 2 --repeats 3 --logging-steps 3 --arms off,full_w0.5,mask_empty,mask_reasoning,mask_empty_span
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lf_thinkplugin.demo.fixtures import QWEN3, tokenizer_dir
from lf_thinkplugin.demo.lf_subprocess import train
from lf_thinkplugin.demo.tiny_model import build_tiny_model

ARMS = {
    "off": None,
    "full": {"think_loss": "full", "log_span_loss": False},
    "full_w0.5": {"think_loss": "full", "think_loss_weight": 0.5, "log_span_loss": False},
    "mask_empty": {"think_loss": "mask_empty", "log_span_loss": False},
    "mask_reasoning": {"think_loss": "mask_reasoning", "log_span_loss": False},
    "mask_empty_span": {"think_loss": "mask_empty", "log_span_loss": True},
    # --paired only: the plugin active but every step on LF's collator, so on / off steps run the same
    # code: an A/A check of the paired method
    "aa": {"think_loss": "mask_empty", "log_span_loss": False},
}

LAUNCHER = '''\
"""Benchmark launcher: llamafactory-cli plus one timing callback (same for every arm)."""
import json, os, sys, time
import transformers
from transformers import TrainerCallback

class _StepTimer(TrainerCallback):
    def __init__(self):
        self.marks = []
    def on_train_begin(self, args, state, control, **kw):
        self.marks = [time.perf_counter()]
    def on_step_end(self, args, state, control, **kw):
        self.marks.append(time.perf_counter())
    def on_train_end(self, args, state, control, **kw):
        m = self.marks
        with open(os.environ["THINKBENCH_STEPS"], "w") as f:
            json.dump({"steps": [b - a for a, b in zip(m, m[1:])], "modes": MODES[: len(m) - 1],
                       "tokens": [TOKENS.get(i, 0) for i in range(len(m) - 1)]}, f)

_init = transformers.Trainer.__init__
def _patched(self, *a, **kw):
    _init(self, *a, **kw)
    self.add_callback(_StepTimer())
transformers.Trainer.__init__ = _patched

# --paired: optimizer steps alternate, in one process, between the plugin's per-step work and LF's.
# A step is "off" when its batches come from LF's own collator: they then carry no span map, and
# the plugin's trainer hands them to LF's compute_loss / token count unchanged (loss/trainer.py).
# Batches are assigned by collator call (call // accumulation = step): exact for the compute, even
# though accelerate's dataloader collates one batch ahead of the step that uses it.
PAIRED = os.environ.get("THINKBENCH_PAIRED")
MODES, CALLS, TOKENS = [], [0], {}
if PAIRED:
    import random
    import lf_thinkplugin.loss.collator as _collator
    _rng, _steps, _accum = random.Random(0), *map(int, PAIRED.split(","))
    for _ in range((_steps + 1) // 2):  # each pair of steps: one on, one off, in random order
        MODES += [True, False] if _rng.random() < 0.5 else [False, True]
    _make = _collator.think_collator_class
    def _paired_class(base_cls):
        cls = _make(base_cls)
        if "_bench_call" not in cls.__dict__:
            think_call = cls.__call__
            def _bench_call(self, features):
                step = CALLS[0] // _accum
                CALLS[0] += 1
                TOKENS[step] = TOKENS.get(step, 0) + sum(len(f["input_ids"]) for f in features)
                on = (MODES[step] if step < len(MODES) else True) and not os.environ.get("THINKBENCH_AA")
                return think_call(self, features) if on else base_cls.__call__(self, features)
            cls.__call__ = cls._bench_call = _bench_call
        return cls
    _collator.think_collator_class = _paired_class

sys.argv = ["llamafactory-cli", *sys.argv[1:]]
from llamafactory.cli import main
main()
'''

WORDS = ["the", "of", "and", "to", "in", "is", "that", "we", "so", "then", "check", "if", "it", "this", "for", "with", "as", "be", "by", "on", "not", "are", "from", "at", "or", "an", "number", "sum", "case", "first", "next", "step", "value", "both", "sides", "again", "means", "gives", "since", "let", "try", "prime", "odd", "even", "divide", "factor", "left", "right", "count", "total", "equal", "larger", "smaller", "compare", "answer", "wait", "hmm", "actually"]


def make_dataset(data_dir: Path, tokenizer, n: int, min_len: int, max_len: int, seed: int = 0) -> None:
    """n sharegpt samples of min_len..max_len tokens: 3/4 one long <think> block + short answer,
    1/4 direct answers (empty think) of the same length."""
    rng = random.Random(seed)
    per_word = len(tokenizer(" ".join(WORDS[:200] * 2))["input_ids"]) / (2 * min(200, len(WORDS)))
    rows = []
    for i in range(n):
        target = rng.randint(min_len, max_len) - 40  # chat tokens, question, tags
        words = [rng.choice(WORDS) for _ in range(int(target / per_word))]
        text = " ".join(words)
        question = f"Problem {i}: what is {rng.randint(2, 999)} + {rng.randint(2, 999)}?"
        if i % 4 == 3:
            answer = "<think>\n\n</think>\n\n" + text
        else:
            answer = f"<think>\n{text}\n</think>\n\nThe answer is {rng.randint(4, 1998)}."
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]})
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "long_think.json").write_text(json.dumps(rows))
    info = {"long_think": {"file_name": "long_think.json", "formatting": "sharegpt", "columns": {"messages": "messages"},
                           "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                                    "assistant_tag": "assistant", "system_tag": "system"}}}
    (data_dir / "dataset_info.json").write_text(json.dumps(info))


def config(model: Path, data: Path, out: Path, args, block) -> dict:
    cfg = {
        "model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
        "dataset": "long_think", "dataset_dir": str(data), "template": "qwen3", "cutoff_len": args.max_len,
        "overwrite_cache": True, "output_dir": str(out), "overwrite_output_dir": True,
        "per_device_train_batch_size": args.batch, "gradient_accumulation_steps": args.accum,
        "max_steps": args.steps, "learning_rate": 1.0e-4, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1,
        "logging_steps": args.logging_steps, "save_strategy": "no", "report_to": "none", "seed": 42,
        "dataloader_num_workers": 0,
    }
    if block is not None:
        cfg["thinkplugin"] = dict(block)
    return cfg


def t95(df: int) -> float:
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
    return table.get(df, 2.0 + 2.4 / df)


def t_interval(ratios: list[float]):
    if len(ratios) < 2:
        return None
    logs = np.log(ratios)
    half = t95(len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
    return math.exp(logs.mean() - half), math.exp(logs.mean() + half)


def boot_interval(x_rounds: list[np.ndarray], y_rounds: list[np.ndarray], draws: int = 2000, seed: int = 0):
    """Ratio of pooled mean step times (x / y): resample rounds, then steps within each process."""
    rng = np.random.default_rng(seed)
    k = len(x_rounds)
    out = np.empty(draws)
    for d in range(draws):
        idx = rng.integers(0, k, k)
        xs = np.concatenate([rng.choice(x_rounds[i], len(x_rounds[i])) for i in idx])
        ys = np.concatenate([rng.choice(y_rounds[i], len(y_rounds[i])) for i in idx])
        out[d] = xs.mean() / ys.mean()
    return float(np.percentile(out, 2.5)), float(np.percentile(out, 97.5))


def paired_pairs(rounds: list[dict], warmup: int) -> np.ndarray:
    """(on, off) per-token step times of each pair of adjacent steps (2j, 2j+1) past the warm-up, all rounds."""
    out = []
    for run in rounds:
        steps, modes, tokens = run["steps"], run["modes"], run["tokens"]
        for j in range(warmup // 2 + warmup % 2, len(steps) // 2):
            a, b = 2 * j, 2 * j + 1
            on, off = (a, b) if modes[a] else (b, a)
            out.append((steps[on] / tokens[on], steps[off] / tokens[off]))
    return np.array(out)


def paired_boot(pairs: np.ndarray, draws: int = 2000, seed: int = 0):
    """Ratio of mean per-token step time, on / off: percentile bootstrap over pairs."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs), (draws, len(pairs)))
    ratios = pairs[idx, 0].mean(axis=1) / pairs[idx, 1].mean(axis=1)
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def write_json(args, raw: dict, summary: dict | None = None) -> None:
    """Every raw timing (and the summary once there is one) to --json."""
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "raw": raw}
    if summary is not None:
        out["summary"] = summary
    args.json.write_text(json.dumps(out, indent=1))


def fmt(iv) -> str:
    return "n/a (1 round)" if iv is None else f"[{iv[0]:.3f}, {iv[1]:.3f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--min-len", type=int, default=1024)
    p.add_argument("--max-len", type=int, default=2048, help="also cutoff_len")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--accum", type=int, default=8)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, help="optimizer steps dropped at the start of each process (default: "
                   "--logging-steps, so the first logging step, which pays the span loss's one-time allocations, is dropped)")
    p.add_argument("--repeats", type=int, default=3, help="rounds; each runs every arm once")
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--arms", help="comma list from: " + ", ".join(ARMS) + " (default: all that apply to the mode)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    p.add_argument("--cpus", help="pin this script and every arm to these cores (comma list, e.g. 0); see the module doc")
    p.add_argument("--json", type=Path, help="write all raw timings here")
    p.add_argument("--malloc", choices=["heap", "default"], default="heap",
                   help="heap: glibc keeps freed blocks (no mmap / trim), so a step does not page-fault its logits back in")
    p.add_argument("--paired", action="store_true",
                   help="per-step cost from adjacent on / off steps inside each arm's process (see the module doc)")
    args = p.parse_args()
    if args.cpus:  # inherited by every arm's process
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    if args.warmup is None:
        args.warmup = max(2, args.logging_steps)
    default = [a for a in ARMS if a not in (("off", "full") if args.paired else ("aa",))]
    arms = args.arms.split(",") if args.arms else default
    if args.paired:
        assert "off" not in arms and all(a in ARMS for a in arms), "--paired arms: names from ARMS but off ('aa' is the A/A)"
    else:
        assert arms[0] == "off" and all(a in ARMS and a != "aa" for a in arms), "arms: 'off' first, then names from ARMS"
    assert args.steps > args.warmup + 1

    from transformers import AutoTokenizer

    tok_dir = tokenizer_dir(QWEN3)
    if tok_dir is None:
        sys.exit("the Qwen3-0.6B tokenizer fixture is missing (LF_THINKPLUGIN_FIXTURES)")
    raw = {a: [] for a in arms}  # per round: {"steps": [...], "wall": s}
    t_start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "model", tokenizer_from=tok_dir, hidden_size=args.hidden, num_layers=args.layers)
        tokenizer = AutoTokenizer.from_pretrained(str(model))
        make_dataset(tmp / "data", tokenizer, args.steps * args.batch * args.accum, args.min_len, args.max_len)
        (tmp / "launch.py").write_text(LAUNCHER)
        env = {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
        if args.malloc == "heap":  # the same for every arm: see the module doc
            env.update({"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40), "MALLOC_TOP_PAD_": str(1 << 30)})
        for r in range(args.repeats):
            order = arms[r % len(arms):] + arms[: r % len(arms)]
            for a in order:
                work = tmp / f"{a}-{r}"
                steps_file = work / "steps.json"
                work.mkdir(parents=True)
                start = time.perf_counter()
                run_env = {**env, "THINKBENCH_STEPS": str(steps_file)}
                if args.paired:
                    run_env["THINKBENCH_PAIRED"] = f"{args.steps},{args.accum}"
                    if a == "aa":
                        run_env["THINKBENCH_AA"] = "1"
                proc = train(config(model, tmp / "data", work / "out", args, ARMS[a]), work, env=run_env,
                             command=[sys.executable, str(tmp / "launch.py"), "train"])
                wall = time.perf_counter() - start
                if proc.returncode != 0 or not steps_file.is_file():
                    sys.exit(f"{a} run failed:\n{proc.stderr[-4000:]}")
                record = json.loads(steps_file.read_text())  # steps, and with --paired modes and tokens
                steps = record["steps"]
                raw[a].append({**record, "wall": wall})
                if args.json:  # partial results survive an interrupted run
                    write_json(args, raw)
                kept = steps[args.warmup:]
                print(f"  round {r} {a:<16} wall {wall:7.1f} s  step mean {np.mean(kept):.3f} s  "
                      f"(median {np.median(kept):.3f}, {len(kept)} steps kept)", flush=True)

    print(f"\nQwen3-architecture model, hidden {args.hidden}, {args.layers} layers, vocab 151,936 (real Qwen3 "
          f"tokenizer), full fine-tune fp32 on CPU, {args.threads} threads on cores {sorted(os.sched_getaffinity(0))}; samples {args.min_len}-{args.max_len} "
          f"tokens (3/4 long <think>, 1/4 empty think), batch {args.batch} x accum {args.accum}, "
          f"logging every {args.logging_steps}; {args.steps} steps per process, first {args.warmup} dropped; "
          f"{args.repeats} rounds, arm order rotated; {time.time() - t_start:.0f} s in all")
    if args.paired:
        return paired_report(raw, arms, args)
    off = [np.array(x["steps"][args.warmup:]) for x in raw["off"]]
    off_wall = [x["wall"] for x in raw["off"]]
    print(f"off: step {np.mean(np.concatenate(off)):.3f} s, command {np.mean(off_wall):.1f} s")
    print("| arm | per-step ratio | 95% (bootstrap rounds+steps) | 95% (t, rounds) | whole command ratio | 95% (t, rounds) |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for a in arms[1:]:
        on = [np.array(x["steps"][args.warmup:]) for x in raw[a]]
        ratio = np.concatenate(on).mean() / np.concatenate(off).mean()
        per_round = [o.mean() / f.mean() for o, f in zip(on, off)]
        walls = [x["wall"] / w for x, w in zip(raw[a], off_wall)]
        wall_ratio = sum(x["wall"] for x in raw[a]) / sum(off_wall)
        b, t, tw = boot_interval(on, off), t_interval(per_round), t_interval(walls)
        summary[a] = {"step_ratio": ratio, "step_boot95": b, "step_t95": t, "wall_ratio": wall_ratio, "wall_t95": tw,
                      "per_round_step": per_round, "per_round_wall": walls}
        print(f"| {a} | {ratio:.3f} | {fmt(b)} | {fmt(t)} | {wall_ratio:.3f} | {fmt(tw)} |")
    if args.json:
        write_json(args, raw, summary)


def paired_report(raw: dict, arms: list[str], args) -> None:
    print("per-step ratio on / off, adjacent steps of one process (time per token; a pair = one step each way)")
    print("| arm | per-step ratio | 95% (bootstrap, pairs) | 95% (t, pairs) | pairs | sd of log-ratio | off step (s) |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for a in arms:
        pairs = paired_pairs(raw[a], args.warmup)
        ratio = pairs[:, 0].mean() / pairs[:, 1].mean()
        b, t = paired_boot(pairs), t_interval(list(pairs[:, 0] / pairs[:, 1]))
        off_step = np.mean([t for x in raw[a] for i, (t, on) in enumerate(zip(x["steps"], x["modes"]))
                            if not on and i >= args.warmup])
        sd = float(np.log(pairs[:, 0] / pairs[:, 1]).std(ddof=1))  # pairs for +-2%: about (1.96 * sd / 0.02) ** 2
        summary[a] = {"step_ratio": ratio, "step_boot95": b, "step_t95": t, "pairs": len(pairs), "sd_log_ratio": sd}
        print(f"| {a} | {ratio:.3f} | {fmt(b)} | {fmt(t)} | {len(pairs)} | {sd:.3f} | {off_step:.2f} |")
    if args.json:
        write_json(args, raw, summary)


if __name__ == "__main__":
    main()
