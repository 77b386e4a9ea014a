"""Every refusal, through the command a user runs: exit status 2, a message naming the key and the fix,
no traceback, and nothing written to output_dir (the refusal comes before LF creates it, or before it
writes anything there)."""

from __future__ import annotations

import pytest

from lfrun import base_config, lf_think, train

pytestmark = pytest.mark.slow
TOKENS = {"<think>": ["think"], "</think>": ["answer"]}

# name -> (config changes, environment, what stderr must say)
CASES = {
    "plugin_key_typo": ({"thinkplugin": {"think_los": "mask_empty"}}, {},
                        "unknown key `thinkplugin.think_los`. Did you mean `thinkplugin.think_loss`?"),
    "lf_key_typo": ({"learning_rat": 1.0e-4, "thinkplugin": {}}, {},
                    "unknown LLaMA-Factory key `learning_rat`. Did you mean `learning_rate`?"),
    "unfreeze_matches_nothing": (
        {"thinkplugin": {"token_init": TOKENS, "train_new_tokens_only": True,
                         "unfreeze": [{"step": 2, "modules": ["*no_such_layer*"]}]}}, {},
        "`thinkplugin.unfreeze[0].modules`: pattern '*no_such_layer*' matches no trainable parameter"),
    "on_malformed_error": ({"dataset": "bad", "thinkplugin": {"on_malformed": "error"}}, {},
                           "1 of 2 samples have malformed think tags"),
    "sft_only_option_in_dpo": ({"stage": "dpo", "dataset": "pairs", "thinkplugin": {"train_new_tokens_only": True,
                                                                                    "token_init": TOKENS}}, {},
                               "`thinkplugin.train_new_tokens_only` acts through the SFT trainer and collator, and stage dpo"),
    "span_logging_in_rm": ({"stage": "rm", "dataset": "pairs", "thinkplugin": {"log_span_loss": True}}, {},
                           "`thinkplugin.log_span_loss` acts through the SFT trainer and collator, and stage rm"),
    "think_loss_in_rm": ({"stage": "rm", "dataset": "pairs", "thinkplugin": {"think_loss": "mask_reasoning"}}, {},
                         "think_loss / think_loss_weight act in stages sft, dpo and kto, got stage: rm (a reward model"),
    "token_init_dpo_full_reference": ({"stage": "dpo", "dataset": "pairs", "thinkplugin": {"token_init": TOKENS}}, {},
                                      "`thinkplugin.token_init` with stage dpo: LF loads a separate reference model"),
    "ppo": ({"stage": "ppo", "reward_model": "x", "thinkplugin": {}}, {}, "`stage: ppo` is not supported by lf-thinkplugin"),
    # (USE_MCA=1 without mcore_adapter installed fails inside LF's own import, before any plugin code)
    "hyper_parallel": ({"use_hyper_parallel": True, "thinkplugin": {}}, {},
                       "`use_hyper_parallel: true` trains through LF's hyper_parallel SFT workflow, which bypass"),
    "ktransformers": ({"use_kt": True, "thinkplugin": {}}, {}, "`use_kt: true` trains through LF's KTransformers trainer"),
    "token_init_fsdp": ({"thinkplugin": {"token_init": TOKENS}}, {"ACCELERATE_USE_FSDP": "true"},
                        "`thinkplugin.token_init` under FSDP is not supported"),
}


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory):
    import json

    folder = tmp_path_factory.mktemp("bad_data")
    sft = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nok\n</think>\n\nfine"}]},
           {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "no open tag</think>\n\nbad"}]}]
    pairs = [{"instruction": "q", "input": "", "chosen": "<think>\na\n</think>\n\nb", "rejected": "c"}] * 4
    (folder / "bad.json").write_text(json.dumps(sft))
    (folder / "pairs.json").write_text(json.dumps(pairs))
    (folder / "dataset_info.json").write_text(json.dumps({
        "bad": {"file_name": "bad.json", "formatting": "sharegpt", "columns": {"messages": "messages"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
        "pairs": {"file_name": "pairs.json", "ranking": True,
                  "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
    }))
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
def test_refusal(case, tiny_qwen3, bad_data, tmp_path):
    changes, env, message = CASES[case]
    out = tmp_path / "out"
    config = base_config(tiny_qwen3, out, max_steps=1, template="qwen3", **changes)
    if "dataset" in changes:
        config["dataset_dir"] = str(bad_data)
    if case == "token_init_dpo_full_reference":
        config["finetuning_type"] = "full"
    proc = train(config, tmp_path, env=env)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert message in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir()), sorted(p.name for p in out.iterdir())


def test_check_names_the_yaml_error(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("model_name_or_path: Qwen/Qwen3-0.6B\nstage: sft\nthinkplugin:\n  think_loss: [mask_empty\n")
    proc = lf_think(["check", str(recipe)], env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(recipe) in proc.stderr and "line 4" in proc.stderr, proc.stderr
