"""The seam: version check, read_args hook, idempotent registration, reversibility."""

import warnings

import pytest

import llamafactory
import llamafactory.hparams as hparams
import llamafactory.hparams.parser as parser
from lf_thinkplugin import register
from lf_thinkplugin.activation import seam
from lf_thinkplugin.options import OptionsError


def test_register_is_idempotent_and_installs_read_args_hook():
    first = register()
    assert register() is first
    assert seam.mode == "patched"
    assert parser.read_args.__name__ == "read_args_with_thinkplugin"
    assert hparams.read_args is parser.read_args
    assert any(item.startswith("template:") for item in first)


def test_read_args_strips_block_and_activates_options():
    register()
    args = {"model_name_or_path": "m", "thinkplugin": {"think_loss": "mask_empty"}}
    out = parser.read_args(args)
    assert out == {"model_name_or_path": "m"}
    assert "thinkplugin" in args  # the caller's dict is not edited
    assert seam.bound().options.think_loss == "mask_empty"
    assert parser.read_args(out) is out and seam.bound() is not None  # LF re-reading the same dict: same run
    assert parser.read_args({"model_name_or_path": "m"}) == {"model_name_or_path": "m"}
    assert seam.bound() is None  # a later programmatic run without a block is stock LF: nothing carried over


def test_read_args_without_block_is_untouched():
    register()
    args = {"model_name_or_path": "m", "template": "qwen3"}
    assert parser.read_args(args) is args
    assert parser.read_args(["--model_name_or_path", "m"]) == ["--model_name_or_path", "m"]


def test_bad_block_raises_for_programmatic_callers():
    register()
    with pytest.raises(OptionsError, match="Did you mean `thinkplugin.think_loss`"):
        parser.read_args({"thinkplugin": {"think_los": "full"}})


def test_unverified_lf_version_is_refused(monkeypatch):
    monkeypatch.setattr(llamafactory, "__version__", "0.9.7")
    monkeypatch.delenv(seam.ALLOW_ENV, raising=False)
    with pytest.raises(seam.UnsupportedLlamaFactory) as err:
        seam.check_version()
    assert ">=0.9.5,<0.10" in str(err.value) and "0.9.7" in str(err.value) and seam.ALLOW_ENV in str(err.value)
    monkeypatch.setenv(seam.ALLOW_ENV, "1")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert seam.check_version() == "0.9.7"
    assert any(seam.ALLOW_ENV in str(w.message) for w in caught)


def test_uninstall_restores_lf_and_install_is_repeatable():
    register()
    wrapped = parser.read_args
    seam.uninstall()
    try:
        assert parser.read_args is wrapped.__wrapped__
        assert hparams.read_args is wrapped.__wrapped__
        assert seam.mode is None
    finally:
        seam.install()
    assert parser.read_args.__name__ == "read_args_with_thinkplugin"


@pytest.mark.parametrize("allow_extra", [None, "1"])
def test_lf_key_typo_gets_a_did_you_mean_while_the_plugin_reads(allow_extra, monkeypatch):
    if allow_extra:  # LF's escape hatch would drop the typo silently; the plugin checks its keys anyway
        monkeypatch.setenv("ALLOW_EXTRA_ARGS", allow_extra)
    register()
    with pytest.raises(OptionsError, match=r"unknown LLaMA-Factory key `learning_rat`. Did you mean `learning_rate`\?"):
        parser.read_args({"model_name_or_path": "m", "learning_rat": 1e-4, "thinkplugin": {}})
    assert seam.bound() is None


def test_each_block_read_binds_its_own_context_and_run_names():
    import llamafactory.train.sft.workflow as workflow
    import llamafactory.train.tuner as tuner

    register()
    stock_run_sft = tuner.run_sft
    first = parser.read_args({"model_name_or_path": "m", "thinkplugin": {"think_loss": "mask_empty"}})
    ctx = seam.bound()
    assert tuner.run_sft is not stock_run_sft and workflow.CustomSeq2SeqTrainer.__name__ == "<lambda>"
    parser.read_args({"model_name_or_path": "m", "thinkplugin": {"think_loss": "mask_reasoning"}})
    assert seam.bound() is not ctx and seam.bound().options.think_loss == "mask_reasoning"
    assert parser.read_args(first) is first and seam.bound() is None  # a dict of an earlier run is a new read
    assert tuner.run_sft is stock_run_sft  # unbound: LF's own functions again


def test_use_ray_with_a_block_is_refused_and_without_one_is_stock_lf(monkeypatch):
    register()
    monkeypatch.setenv("USE_RAY", "1")
    with pytest.raises(OptionsError) as err:
        parser.read_args({"model_name_or_path": "m", "thinkplugin": {"think_loss": "mask_empty"}})
    assert str(err.value) == seam.RAY_REFUSAL and seam.bound() is None
    args = {"model_name_or_path": "m"}
    assert parser.read_args(args) is args  # no block: LF's own Ray launcher, untouched
