"""FSDP through accelerate, as LF documents it (`accelerate launch --config_file fsdp.yaml launcher.py
cfg.yaml`), on two CPU ranks: FSDP2 (fully_shard; FSDP1 needs an accelerator). The plugin's weighted
loss and span logging act in every rank and give the losses a DDP run of the same config gives;
token_init under FSDP is refused by name (tests/test_refusals.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lfrun import BIN, base_config, log_history, train

import llamafactory

pytestmark = pytest.mark.slow
LAUNCHER = Path(llamafactory.__file__).parent / "launcher.py"
ACCELERATE_FSDP2_CPU = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_reshard_after_forward: true
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_cpu_ram_efficient_loading: true
  fsdp_offload_params: false
mixed_precision: 'no'
num_machines: 1
num_processes: 2
machine_rank: 0
rdzv_backend: static
same_network: true
use_cpu: true
"""
BLOCK = {"think_loss": "mask_empty", "think_loss_weight": 0.5, "log_span_loss": True}


def test_fsdp2_two_cpu_ranks_match_ddp(tiny_qwen3, tmp_path):
    config = {"max_steps": 2, "per_device_train_batch_size": 1, "ddp_backend": "gloo", "thinkplugin": BLOCK}
    acc = tmp_path / "fsdp.yaml"
    acc.write_text(ACCELERATE_FSDP2_CPU)
    fsdp = train(base_config(tiny_qwen3, tmp_path / "fsdp", **config), tmp_path / "a",
                 command=[str(BIN / "accelerate"), "launch", "--config_file", str(acc), str(LAUNCHER)])
    assert fsdp.returncode == 0, fsdp.stderr[-3000:]
    assert "You are using fsdp2" in fsdp.stdout + fsdp.stderr
    ddp = train(base_config(tiny_qwen3, tmp_path / "ddp", **config), tmp_path / "b",
                env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    keys = ("loss", "loss_think", "loss_answer")
    runs = [[r for r in log_history(tmp_path / name) if "loss" in r] for name in ("fsdp", "ddp")]
    assert len(runs[0]) == len(runs[1]) == 2
    for step, (a, b) in enumerate(zip(*runs, strict=True)):
        for key in keys:  # step 1: the same weights and batches; step 2: after one (equivalent) update
            assert math.isclose(a[key], b[key], rel_tol=1e-5 if step == 0 else 1e-3), (step, key, a[key], b[key])
    assert (tmp_path / "fsdp" / "thinkplugin_args.yaml").is_file()
