"""Peak memory of the loss step, plugin on vs off, on one long sequence's logits (target: ratio <= 1.10).

One sample of `--seq` tokens over the Qwen3 vocabulary (151,936), logits in the dtype a real run hands
the loss (`bf16`: bf16 training, the default; `fp32`: fp32 training), as a leaf tensor standing in for
the lm_head output. Shape of the labels: a prompt (10%, not trained), reasoning (70%), answer (20%).
Each measurement runs in its own fresh child process, which allocates the logits in place, resets its
peak RSS (`/proc/self/clear_refs`), runs one loss forward + backward, and reports peak RSS (VmHWM)
above the RSS just before (the logits and the gradient buffer they get are in both sides' figures):

- `off`: LF / transformers' own loss on those logits (`ForCausalLMLoss`, what the model's forward runs
  with labels), then backward;
- `weighted`: the plugin's reasoning-weighted loss (`think_loss_weight`, default 0.5), then backward;
- `span`: LF's loss, then the plugin's `loss_think` / `loss_answer` measurement of a logging step
  (made while LF's loss still holds its saved tensors, as in the trainer), then backward; the
  measurement's own peak above the RSS just before it is printed too;
- `weighted-old` / `span-old` (with `--old`): the former one-piece computations (`logits.float()` over all
  positions, `logits[at].float()` over all trained ones), copied here, for comparison.

    python benchmarks/bench_loss_memory.py [--seq 8192] [--dtype bf16] [--weight 0.5] [--runs 1] [--old]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = 151936
MODES = ("off", "weighted", "span")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where it cannot be."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def batch(seq: int, dtype, seed: int = 0):
    """(logits leaf, labels, input_ids, span kinds) for one sample: prompt 10%, reasoning 70%, answer 20%."""
    import torch

    from lf_thinkplugin.loss.spans import IGNORE_INDEX, REASONING

    gen = torch.Generator().manual_seed(seed)
    logits = torch.empty(1, seq, VOCAB, dtype=dtype).normal_(0, 2, generator=gen).requires_grad_()  # in place
    ids = torch.randint(0, VOCAB, (1, seq), generator=gen)
    prompt, reasoning = seq // 10, seq // 10 + (7 * seq) // 10
    labels = ids.clone()
    labels[:, :prompt] = IGNORE_INDEX
    kinds = torch.ones(1, seq, dtype=torch.int8)
    kinds[:, :prompt] = 0
    kinds[:, prompt:reasoning] = REASONING
    return logits, labels, ids, kinds


def old_weighted(logits, labels, kinds, weight):
    """The weighted loss before chunking: one fp32 cross-entropy over every position."""
    import torch.nn.functional as F

    from lf_thinkplugin.loss.trainer import IGNORE_INDEX, _shift, token_weights

    targets = _shift(labels, IGNORE_INDEX)
    weights = _shift(token_weights(labels, kinds, weight), 0)
    ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX,
                         reduction="none").view(targets.shape)
    return (ce * weights).sum() / weights.sum()


def old_track(logits, labels, input_ids, kinds):
    """The span measurement before chunking: `logits[at].float()` over every trained position."""
    import torch
    import torch.nn.functional as F

    from lf_thinkplugin.loss.trainer import IGNORE_INDEX, REASONING, _shift

    with torch.no_grad():
        masked = (labels == IGNORE_INDEX) & (kinds == REASONING)
        targets = _shift(torch.where(masked, input_ids, labels), IGNORE_INDEX)
        kind = _shift(kinds.to(torch.int64), 0)
        kind = torch.where(targets == IGNORE_INDEX, torch.zeros_like(kind), kind)
        at = kind > 0
        ce = F.cross_entropy(logits[at].float(), targets[at], reduction="none")
        think = kind[at] == REASONING
        return torch.stack([ce[think].sum(), think.sum(), ce[~think].sum(), (~think).sum()]).to(torch.float32)


def memory_child(mode: str, args) -> None:
    import torch
    from llamafactory.train.sft.trainer import CustomSeq2SeqTrainer
    from transformers.loss.loss_utils import ForCausalLMLoss

    import lf_thinkplugin.loss.trainer as trainer_mod
    from lf_thinkplugin.options import ThinkPluginOptions

    torch.set_num_threads(args.threads)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    logits, labels, ids, kinds = batch(args.seq, dtype)
    cls = trainer_mod.think_trainer_class(CustomSeq2SeqTrainer, ThinkPluginOptions(log_span_loss=True))
    fake = types.SimpleNamespace(state=types.SimpleNamespace(global_step=0), _span_step=0, _span_sums=None)

    before = rss_bytes()
    exact = reset_peak()
    start = time.perf_counter()
    if mode == "weighted":  # what compute_loss does with the logits at think_loss_weight < 1
        total, _, weights = trainer_mod.weighted_loss_sum(logits, labels, kinds, args.weight)
        loss = total / weights.sum()
    elif mode == "weighted-old":
        loss = old_weighted(logits, labels, kinds, args.weight)
    else:
        loss = ForCausalLMLoss(logits, labels, VOCAB)
    track_extra = None
    if mode.startswith("span") and exact:  # also the measurement's own peak above what LF's loss holds then
        so_far, held = peak_bytes(), rss_bytes()
        reset_peak()
        cls._track(fake, logits, labels, ids, kinds) if mode == "span" else old_track(logits, labels, ids, kinds)
        track_extra = max(peak_bytes() - held, 0)
    elif mode.startswith("span"):
        cls._track(fake, logits, labels, ids, kinds) if mode == "span" else old_track(logits, labels, ids, kinds)
    loss.backward()
    seconds = time.perf_counter() - start
    peak = peak_bytes() if exact else __import__("resource").getrusage(0).ru_maxrss * 1024
    if track_extra is not None:
        peak = max(peak, so_far)
    print(json.dumps({"delta": max(peak - before, 0), "before": before, "exact": exact, "seconds": seconds,
                      "loss": loss.item(), "track_extra": track_extra}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--runs", type=int, default=1, help="fresh processes per measurement (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--old", action="store_true", help="also measure the former unchunked computations")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child, args)

    modes = MODES + (("weighted-old", "span-old") if args.old else ())
    gib = 2**30
    logits_gib = args.seq * VOCAB * (2 if args.dtype == "bf16" else 4) / gib
    from lf_thinkplugin.loss.trainer import LOSS_CHUNK

    print(f"one sample of {args.seq} tokens x {VOCAB} vocab, {args.dtype} logits ({logits_gib:.2f} GiB), "
          f"weight {args.weight}, LOSS_CHUNK {LOSS_CHUNK}, {args.threads} threads")
    results = {}
    for mode in modes:
        runs = []
        for _ in range(args.runs):
            cmd = [sys.executable, __file__, "--memory-child", mode, "--seq", str(args.seq), "--dtype", args.dtype,
                   "--weight", str(args.weight), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"{mode} child failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        results[mode] = {"delta": statistics.median(r["delta"] for r in runs),
                         "seconds": statistics.median(r["seconds"] for r in runs), **runs[-1]}
        r = results[mode]
        print(f"  {mode:16s} peak above baseline {r['delta'] / gib:6.2f} GiB  (baseline RSS {r['before'] / gib:.2f} GiB, "
              f"{r['seconds']:.1f} s, loss {r['loss']:.4f}"
              f"{'' if r['exact'] else ', ru_maxrss since start'})")
        if r["track_extra"] is not None:
            print(f"  {'':16s} of which the span measurement's own peak above the memory LF's loss holds then: "
                  f"{r['track_extra'] / gib:.2f} GiB")
    off = results["off"]["delta"]
    for mode in modes[1:]:
        print(f"peak-memory ratio {mode}/off: {results[mode]['delta'] / off:.3f}" + (" (target <= 1.10)" if "old" not in
              mode else ""))


if __name__ == "__main__":
    main()
