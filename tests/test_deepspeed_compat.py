"""The DeepSpeed version guard for token_init's embedding copies under ZeRO-3 (no DeepSpeed needed)."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from lf_thinkplugin.tokens import deepspeed_guard
from lf_thinkplugin.tokens.deepspeed_guard import check_embedding_copies, zero_stage
from lf_thinkplugin.options import OptionsError

ZERO3 = str(REPO / "examples" / "deepspeed" / "ds_z3_config.json")


@pytest.fixture
def deepspeed_version(monkeypatch):
    def set_version(version: str | None):
        def fake(name: str) -> str:
            if name != "deepspeed" or version is None:
                raise deepspeed_guard.metadata.PackageNotFoundError(name)
            return version

        monkeypatch.setattr(deepspeed_guard.metadata, "version", fake)

    return set_version


def test_zero_stage_reads_a_path_or_a_dict(tmp_path):
    z2 = tmp_path / "z2.json"
    z2.write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    assert zero_stage({"deepspeed": ZERO3}) == 3
    assert zero_stage({"deepspeed": str(z2)}) == 2
    assert zero_stage({"deepspeed": {"zero_optimization": {"stage": 3}}}) == 3
    assert zero_stage({}) is None and zero_stage({"deepspeed": str(tmp_path / "missing.json")}) is None


@pytest.mark.parametrize("version", ["0.16.5", "0.17.6", "0.19.2"])
def test_lora_under_zero3_with_a_broken_deepspeed_is_refused_with_the_fix(deepspeed_version, version):
    deepspeed_version(version)
    with pytest.raises(OptionsError) as err:
        check_embedding_copies({"finetuning_type": "lora", "deepspeed": ZERO3})
    message = str(err.value)
    assert f"deepspeed {version} cannot" in message and "DeepSpeed#7615" in message
    assert "Install deepspeed>=0.19.3 (or <=0.16.4)" in message and "ds_z3_config.json" in message


@pytest.mark.parametrize("version", ["0.16.4", "0.19.3", "0.19.8", None])
def test_working_or_absent_deepspeed_passes(deepspeed_version, version):
    deepspeed_version(version)
    check_embedding_copies({"finetuning_type": "lora", "deepspeed": ZERO3})


@pytest.mark.parametrize("lf_args", [
    {"finetuning_type": "full", "deepspeed": ZERO3},  # no copies: the weights themselves train
    {"finetuning_type": "lora", "deepspeed": {"zero_optimization": {"stage": 2}}},
    {"finetuning_type": "lora"},
])
def test_other_runs_pass_with_any_deepspeed(deepspeed_version, lf_args):
    deepspeed_version("0.17.6")
    check_embedding_copies(lf_args)


def test_default_finetuning_type_is_lf_s_lora(deepspeed_version):
    deepspeed_version("0.17.6")
    with pytest.raises(OptionsError, match="finetuning_type lora under ZeRO-3"):
        check_embedding_copies({"deepspeed": ZERO3})
