"""`USE_RAY=1` (LF's Ray launcher) with a `thinkplugin:` block is refused before any work.

LF 0.9.5's Ray path cannot train on CPU (measured, ray 2.60): `_ray_training_function` asks for one
{"CPU": 10} bundle per CPU of the cluster, so its placement group never becomes ready and the run
hangs. The plugin in Ray workers is therefore unverified, and the seam refuses the combination with
the reason and the alternative (torchrun) instead of running it (seam.RAY_REFUSAL).
"""

import pytest

from lfrun import base_config, train

from lf_thinkplugin.activation import seam

pytestmark = pytest.mark.slow


def test_use_ray_with_block_is_refused_before_any_work(tiny_qwen3, tmp_path):
    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, max_steps=2, ray_num_workers=2, ray_init_kwargs={"num_cpus": 2},
                         thinkplugin={"think_loss": "mask_empty", "log_span_loss": True})
    proc = train(config, tmp_path, env={"USE_RAY": "1"}, timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 2, log[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == f"[lf_thinkplugin] error: {seam.RAY_REFUSAL}"
    for needle in ("`USE_RAY=1`", "cannot train on CPU", "FORCE_TORCHRUN=1 NPROC_PER_NODE="):
        assert needle in seam.RAY_REFUSAL
    assert "Traceback" not in log
    assert "ray.remote mode" not in log and "Started a local Ray instance" not in log  # Ray never started
    assert "loading weights" not in log.lower()
    assert not out.exists()
