"""token_init: validation before training, row init through LF's real loader, resume, saved artefacts.

The model is a tiny Qwen3-architecture model carrying the real Qwen2.5 tokenizer, which has no
think tags: `<think>` / `</think>` become ids 151665 / 151666, inside the checkpoint's spare rows
(151936 rows for 151665 tokens), where LF 0.9.5 neither resizes nor initialises.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
from conftest import require_fixture
from lfrun import SEAM_PROBE, train_ok
from token_rows import END, SPECS, THINK, combo, lf_config, lf_load, run_init, weights

from lf_thinkplugin.demo.fixtures import QWEN25
from lf_thinkplugin.options import OptionsError, parse_options
from lf_thinkplugin.tokens.token_init import NOISE_TRUNCATION, make_callbacks, prepare_lf_args


def prepare(opts, lf_args):
    """token_init's preparation with the checkpoint tokenizer a run context loads (faithful); returns the plan."""
    from lf_thinkplugin.loading.tokenizer import from_pretrained

    return prepare_lf_args(opts, lf_args, from_pretrained(lf_args["model_name_or_path"]))


# ------------------------------------------------------------------------------------------
# validation before training


def test_prepare_adds_missing_tokens_through_lf_add_tokens(qwen25_untied):
    opts = parse_options({"token_init": SPECS})
    lf_args = {"model_name_or_path": str(qwen25_untied), "add_tokens": "<tool>", "finetuning_type": "full"}
    prepare(opts, lf_args)
    assert lf_args["add_tokens"] == "<tool>,<think>,</think>"  # the user's own value kept, ours appended
    assert "resize_vocab" not in lf_args  # LF sets it itself when add_tokens adds something


def test_prepare_leaves_tokens_the_user_makes_special(qwen25_untied):
    opts = parse_options({"token_init": SPECS})
    lf_args = {"model_name_or_path": str(qwen25_untied), "add_special_tokens": "</think>", "finetuning_type": "full"}
    prepare(opts, lf_args)
    assert lf_args["add_tokens"] == "<think>"


def test_prepare_with_lora_plans_lf_ids_and_leaves_resize_vocab_to_lf(qwen25_untied):
    lf_args = {"model_name_or_path": str(qwen25_untied), "finetuning_type": "lora", "add_tokens": "<tool>"}
    plan = prepare(parse_options({"token_init": SPECS}), lf_args)
    assert "resize_vocab" not in lf_args  # the PEFT config hook makes the rows trainable; LF resizes on add_tokens
    # the ids LF's patch_tokenizer gives: the user's <tool> first, then ours
    assert plan.ids == {"<think>": THINK + 1, "</think>": END + 1}
    assert plan.additional_target is None


def test_existing_token_is_left_with_a_warning_unless_reinit(tiny_qwen3, capsys):
    lf_args = {"model_name_or_path": str(tiny_qwen3), "finetuning_type": "full"}
    plan = prepare(parse_options({"token_init": {"<think>": ["思考"]}}), lf_args)
    assert "add_tokens" not in lf_args
    entry = plan.tokens[0]
    assert (entry.is_new, entry.initialise) == (False, False)
    assert "'<think>' already exists (id 151667)" in capsys.readouterr().out
    plan = prepare(parse_options({"token_init": {"<think>": ["思考"]}, "reinit": True}), lf_args)
    assert plan.tokens[0].initialise is True
    assert "add_tokens" not in lf_args


@pytest.mark.parametrize(
    "block, message",
    [
        ({"token_init": {"<think>": {"strategy": "guess"}}}, "`thinkplugin.token_init.<think>.strategy` = 'guess' is not allowed"),
        ({"token_init": {"<think>": []}}, "`thinkplugin.token_init.<think>`"),
        ({"token_init": {}}, "`thinkplugin.token_init` = {}: Value error, is empty"),
        ({"token_init": {"<think>": ["思考"], "</think>": ["<think>"]}}, "source '<think>' of token '</think>' contains"),
        ({"token_init": {"<a,b>": ["a"]}}, "token '<a,b>' must be non-empty, without surrounding spaces or commas"),
    ],
)
def test_bad_specs_are_refused_naming_the_key(block, message):
    with pytest.raises(OptionsError) as err:
        parse_options(block)
    assert message in str(err.value)


def test_empty_sources_list_says_what_to_write():
    with pytest.raises(OptionsError, match=r"strategy `tokens` needs a non-empty `sources` list"):
        parse_options({"token_init": {"<think>": []}})


def test_source_encoding_to_nothing_is_refused(qwen25_untied):
    opts = parse_options({"token_init": {"<think>": [""]}})
    with pytest.raises(OptionsError, match=r"`thinkplugin.token_init.<think>`: source '' encodes to no token"):
        prepare(opts, {"model_name_or_path": str(qwen25_untied)})


def test_new_rows_training_refuses_deepspeed(qwen25_untied):
    opts = parse_options({"token_init": SPECS, "train_new_tokens_only": True})
    with pytest.raises(OptionsError, match="not supported with `deepspeed`"):
        prepare(opts, {"model_name_or_path": str(qwen25_untied), "deepspeed": "ds_z3.json"})


def test_single_id_check_rejects_a_token_the_tokenizer_splits(load_tokenizer):
    from lf_thinkplugin.tokens.token_init import _check_single_id

    tok = load_tokenizer(QWEN25)  # no <think> in it: it encodes to 3 ids
    with pytest.raises(OptionsError, match=r"`thinkplugin.token_init.<think>`: '<think>' does not encode to the single id"):
        _check_single_id(tok, "<think>")


# ------------------------------------------------------------------------------------------
# row init on models loaded by LF


def test_rows_in_spare_rows_are_initialised_in_and_out(qwen25_untied, capsys):
    ctx, _, tok, model, targs = lf_load(qwen25_untied, {"token_init": SPECS})
    w_in, w_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert w_in is not w_out and w_in.shape[0] == 151936  # untied, and LF did not resize
    assert tok.convert_tokens_to_ids(["<think>", "</think>"]) == [THINK, END]
    before_in, before_out = w_in.detach().clone(), w_out.detach().clone()
    saved = weights(qwen25_untied)  # LF 0.9.5 left the spare rows as the checkpoint had them
    assert torch.equal(before_in[THINK], saved["model.embed_tokens.weight"][THINK])

    run_init(ctx, model, tok, targs)

    # <think>: tokens ['思考', 'think'] -> exact combination, in and out
    torch.testing.assert_close(w_in[THINK], combo(before_in, tok, ["思考", "think"]), rtol=0, atol=1e-7)
    torch.testing.assert_close(w_out[THINK], combo(before_out, tok, ["思考", "think"]), rtol=0, atol=1e-7)
    assert not torch.allclose(w_in[THINK], w_out[THINK])  # each matrix from its own rows
    # </think>: text + noise 0.1 -> within the truncation bound of the noise, and not exactly the mean
    for w, before in ((w_in, before_in), (w_out, before_out)):
        base = combo(before, tok, ["end of reasoning"])
        mean_norm = before[:151665].norm(dim=1).mean()  # </think> and <think> are not existing rows
        std = 0.1 * mean_norm / math.sqrt(before.shape[1])
        delta = w[END] - base
        assert delta.abs().max() <= NOISE_TRUNCATION * std + 1e-7
        assert delta.abs().max() > 0.1 * std
    # nothing else moved
    keep = torch.ones(151936, dtype=torch.bool)
    keep[[THINK, END]] = False
    assert torch.equal(w_in[keep], before_in[keep]) and torch.equal(w_out[keep], before_out[keep])
    table = capsys.readouterr().out
    assert "<think>   151665  tokens" in table and "'思考' | 'think'" in table
    assert "</think>  151666  text+noise" in table and "'end' ' of' ' reasoning'" in table


def test_mean_strategy_is_the_mean_of_existing_rows_and_same_seed_same_rows(qwen25_untied):
    block = {"token_init": {"<think>": {"strategy": "mean"}, "</think>": {"strategy": "noisy_mean"}}}
    ctx, _, tok, model, targs = lf_load(qwen25_untied, block)
    w = model.get_input_embeddings().weight
    before = w.detach().clone()
    run_init(ctx, model, tok, targs)
    mean = before[:151665].float().mean(dim=0)
    torch.testing.assert_close(w[THINK], mean, rtol=0, atol=1e-7)
    assert 0 < (w[END] - mean).abs().max() <= NOISE_TRUNCATION * 0.02 * before[:151665].norm(dim=1).mean() / math.sqrt(64) + 1e-7
    first = w[END].clone()
    w.data.copy_(before)  # a second rank: same seed, same rows
    run_init(ctx, model, tok, targs)
    assert torch.equal(w[END], first)


def test_grown_matrix_rows_overwrite_lf_noisy_mean(tmp_path):
    """No spare rows: LF resizes (151665 -> 151680) and noisy-mean-inits; ours replaces our rows."""
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path / "m", require_fixture(QWEN25), tie_word_embeddings=True, vocab_rows=151665)
    before = weights(folder)["model.embed_tokens.weight"]
    ctx, _, tok, model, targs = lf_load(folder, {"token_init": {"<think>": ["思考"], "</think>": ["-"]}})
    w = model.get_input_embeddings().weight
    assert w.shape[0] == 151680 and model.config.vocab_size == 151680
    assert w is model.get_output_embeddings().weight  # tied
    run_init(ctx, model, tok, targs)
    torch.testing.assert_close(w[THINK], combo(before, tok, ["思考"]), rtol=0, atol=1e-7)
    torch.testing.assert_close(w[END], combo(before, tok, ["-"]), rtol=0, atol=1e-7)


def test_lora_trains_the_new_rows_as_peft_trainable_tokens(qwen25_untied):
    from peft.utils.other import TrainableTokensWrapper

    ctx, _, tok, model, targs = lf_load(qwen25_untied, {"token_init": SPECS}, finetuning_type="lora")
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert isinstance(emb, TrainableTokensWrapper) and isinstance(head, TrainableTokensWrapper)
    config = model.peft_config["default"]
    assert config.modules_to_save is None  # no full copies, although LF's resize_vocab asked for them
    assert config.trainable_token_indices == {"embed_tokens": [THINK, END], "lm_head": [THINK, END]}
    trainable = {n: tuple(p.shape) for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert trainable == {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta.default": (2, 64),
                         "base_model.model.lm_head.token_adapter.trainable_tokens_delta.default": (2, 64)}
    before_in = emb.original_module.weight.detach().clone()
    before_out = head.original_module.weight.detach().clone()
    run_init(ctx, model, tok, targs)
    want = {"in": combo(before_in, tok, ["思考", "think"]), "out": combo(before_out, tok, ["思考", "think"])}
    for key, module, before in (("in", emb, before_in), ("out", head, before_out)):
        effective = module.weight  # PEFT's merged view: base rows with the delta rows put in
        torch.testing.assert_close(effective[THINK], want[key], rtol=0, atol=1e-7)
        adapter = module.token_adapter
        for rows in (adapter.trainable_tokens_delta["default"], adapter.trainable_tokens_original["default"]):
            assert torch.equal(rows, module.original_module.weight[[THINK, END]])  # delta, original, base agree
        keep = torch.ones(before.shape[0], dtype=torch.bool)
        keep[[THINK, END]] = False
        assert torch.equal(effective[keep], before[keep])
    assert not torch.allclose(emb.weight[END], head.weight[END])  # each matrix from its own rows


def test_lora_tied_output_follows_the_input_rows(tmp_path):
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path / "m", require_fixture(QWEN25), tie_word_embeddings=True)
    ctx, _, tok, model, targs = lf_load(folder, {"token_init": {"<think>": ["思考"], "</think>": ["-"]}}, finetuning_type="lora")
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    assert model.peft_config["default"].trainable_token_indices == {"embed_tokens": [THINK, END]}
    assert model.peft_config["default"].modules_to_save is None
    assert head.token_adapter.tied_adapter is emb.token_adapter  # PEFT ties lm_head to the input rows
    before = emb.original_module.weight.detach().clone()
    run_init(ctx, model, tok, targs)
    for tid, sources in ((THINK, ["思考"]), (END, ["-"])):
        torch.testing.assert_close(head.weight[tid], combo(before, tok, sources), rtol=0, atol=1e-7)
        assert torch.equal(head.weight[tid], emb.weight[tid])
    emb.token_adapter.token_indices["default"] = [THINK, END + 1]  # ids that disagree with LF's tokenizer
    with pytest.raises(RuntimeError, match=r"'</think>' has id 151666 in LF's tokenizer, but the adapter's trainable "
                                           r"tokens are \[151665, 151667\]"):
        run_init(ctx, model, tok, targs)


def test_lora_with_embeddings_in_additional_target_keeps_full_copies(qwen25_untied):
    ctx, _, tok, model, targs = lf_load(qwen25_untied, {"token_init": SPECS}, finetuning_type="lora",
                                         additional_target="embed_tokens,lm_head")
    assert model.peft_config["default"].trainable_token_indices is None
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    copies = [emb.modules_to_save["default"].weight, head.modules_to_save["default"].weight]
    assert all(c.requires_grad for c in copies)  # the user's choice: full trainable copies
    before_in = emb.original_module.weight.detach().clone()
    before_out = head.original_module.weight.detach().clone()
    run_init(ctx, model, tok, targs)
    want_in, want_out = combo(before_in, tok, ["思考", "think"]), combo(before_out, tok, ["思考", "think"])
    for w in (emb.original_module.weight, copies[0]):
        torch.testing.assert_close(w[THINK], want_in, rtol=0, atol=1e-7)
    for w in (head.original_module.weight, copies[1]):
        torch.testing.assert_close(w[THINK], want_out, rtol=0, atol=1e-7)
    assert torch.equal(copies[0][END], emb.original_module.weight[END])


def test_oft_gets_full_copies_from_the_hook_even_without_new_tokens(tiny_qwen3, capsys):
    """OFT has no trainable tokens; <think> exists in Qwen3 (reinit), so LF adds no token and asks for no
    copies: the hook adds embed_tokens / lm_head to modules_to_save itself."""
    block = {"token_init": {"<think>": ["思考"]}, "reinit": True}
    ctx, _, tok, model, targs = lf_load(tiny_qwen3, block, finetuning_type="oft")
    assert sorted(model.peft_config["default"].modules_to_save) == ["embed_tokens", "lm_head"]
    assert "(OFTConfig has no trainable_token_indices); training full copies of embed_tokens, lm_head" in capsys.readouterr().out
    emb = model.get_input_embeddings()
    before = emb.original_module.weight.detach().clone()
    run_init(ctx, model, tok, targs)
    torch.testing.assert_close(emb.modules_to_save["default"].weight[151667], combo(before, tok, ["思考"]), rtol=0, atol=1e-7)


def test_peft_config_passes_through_without_token_init(qwen25_untied):
    from peft import LoraConfig

    from lf_thinkplugin.activation.context import RunContext

    config = LoraConfig(target_modules=["q_proj"], modules_to_save=["embed_tokens", "lm_head"])
    snapshot = config.to_dict()
    ctx = RunContext.create({"log_span_loss": False}, {"model_name_or_path": str(qwen25_untied)}, from_cli=False)
    assert ctx.token_plan is None
    assert ctx.peft_config(torch.nn.Module(), config) is config
    assert config.to_dict() == snapshot


def test_init_is_skipped_when_resuming(qwen25_untied, capsys):
    ctx, _, tok, model, targs = lf_load(qwen25_untied, {"token_init": SPECS})
    w = model.get_input_embeddings().weight
    before = w.detach().clone()
    run_init(ctx, model, tok, targs, global_step=2)
    assert torch.equal(w, before)
    assert "resumed at step 2; rows kept from the checkpoint" in capsys.readouterr().out


def test_init_runs_when_the_trainer_is_built_and_refuses_a_late_callback_under_deepspeed(qwen25_untied):
    """Rows are written at on_init_end, before any optimizer / DeepSpeed engine copies the weights;
    a callback added after the trainer was built may still init at on_train_begin, except under
    DeepSpeed, whose fp32 partitions would revert the rows (tests/test_token_init_zero3.py)."""
    from transformers import TrainerControl, TrainerState

    ctx, _, tok, model, targs = lf_load(qwen25_untied, {"token_init": SPECS})
    w = model.get_input_embeddings().weight
    before = w.detach().clone()
    early = make_callbacks(ctx.token_plan)[0]
    early.on_init_end(targs, TrainerState(), TrainerControl(), model=model, processing_class=tok)
    assert not torch.equal(w[THINK], before[THINK])
    written = w.detach().clone()
    early.on_train_begin(targs, TrainerState(), TrainerControl(), model=model, processing_class=tok)
    assert torch.equal(w, written)  # not twice
    targs.deepspeed = "ds_z3_config.json"
    late = make_callbacks(ctx.token_plan)[0]
    with pytest.raises(RuntimeError, match=r"added after the trainer was built, too late under DeepSpeed"):
        late.on_train_begin(targs, TrainerState(), TrainerControl(), model=model, processing_class=tok)


# ------------------------------------------------------------------------------------------
# real runs: `llamafactory-cli train` with a thinkplugin block


@pytest.mark.slow
def test_resume_keeps_the_checkpoint_rows_and_saves_tokens_and_vocab(qwen25_untied, think_data, tmp_path):
    """A run resumed from checkpoint-2 ends bit-identical to the uninterrupted run; re-initialising the
    trained rows on resume would make them differ."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    log = train_ok(lf_config(qwen25_untied, think_data, full, {"token_init": SPECS}), tmp_path)
    assert "token_init rows:" in log
    ckpt = weights(full / "checkpoint-2")
    fresh = weights(qwen25_untied)
    assert not torch.equal(ckpt["model.embed_tokens.weight"][THINK], fresh["model.embed_tokens.weight"][THINK])
    log = train_ok(lf_config(qwen25_untied, think_data, resumed, {"token_init": SPECS},
                             resume_from_checkpoint=str(full / "checkpoint-2")), tmp_path)
    assert "token_init: resumed at step 2; rows kept from the checkpoint" in log and "token_init rows:" not in log
    want, got = weights(full), weights(resumed)
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    out = full
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    # saved tokenizer: the tags are single, non-special tokens that skip_special_tokens keeps
    assert len(tok) == 151667 and tok.convert_tokens_to_ids(["<think>", "</think>"]) == [THINK, END]
    ids = tok.encode("<think>\nx\n</think>\n\ny", add_special_tokens=False)
    assert ids[0] == THINK and END in ids
    assert tok.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>\n\ny"
    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == want["model.embed_tokens.weight"].shape[0] == 151936 >= len(tok)


@pytest.mark.slow
def test_torchrun_two_ranks_identical_rows_one_table_grown_vocab_saved(think_data, tmp_path):
    """Two gloo ranks on a checkpoint without spare rows: LF grows 151665 -> 151680 rows; the new rows
    are checked identical across ranks, the table is logged once, the saved config has the new size."""
    from lf_thinkplugin.demo.tiny_model import build_tiny_model

    folder = build_tiny_model(tmp_path / "m", require_fixture(QWEN25), tie_word_embeddings=False, vocab_rows=151665)
    out = tmp_path / "out"
    cfg = lf_config(folder, think_data, out, {"token_init": SPECS, "train_new_tokens_only": True},
                    max_steps=1, save_steps=10, ddp_backend="gloo")
    log = train_ok(cfg, tmp_path, env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})
    assert log.count("token_init rows:") == 1 and "(identical on all 2 ranks)" in log
    config = json.loads((out / "config.json").read_text())
    saved = weights(out)
    assert config["vocab_size"] == saved["model.embed_tokens.weight"].shape[0] == saved["lm_head.weight"].shape[0] == 151680


@pytest.mark.slow
def test_lora_run_saves_only_the_new_rows_resumes_and_loads_back(qwen25_untied, think_data, tmp_path):
    """LoRA + token_init: the adapter holds the LoRA weights plus two rows per embedding module (no full
    copies); a resume from checkpoint-2 ends bit-identical; the base model + adapter, loaded or merged,
    reproduce the trained rows."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "out"
    lora = {"finetuning_type": "lora", "lora_target": "all", "max_steps": 4, "save_steps": 2}
    log = train_ok(lf_config(qwen25_untied, think_data, out, {"token_init": SPECS}, **lora), tmp_path)
    assert "as PEFT trainable tokens; no full embedding copies" in log
    resumed = train_ok(lf_config(qwen25_untied, think_data, tmp_path / "resumed", {"token_init": SPECS},
                                 resume_from_checkpoint=str(out / "checkpoint-2"), **lora), tmp_path)
    assert "token_init: resumed at step 2; rows kept from the checkpoint" in resumed
    want, got = load_file(str(out / "adapter_model.safetensors")), load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["modules_to_save"] is None
    assert config["trainable_token_indices"] == {"embed_tokens": [THINK, END], "lm_head": [THINK, END]}
    adapter = load_file(str(out / "adapter_model.safetensors"))
    deltas = {"model.embed_tokens.weight": adapter.pop("base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta"),
              "lm_head.weight": adapter.pop("base_model.model.lm_head.token_adapter.trainable_tokens_delta")}
    assert all(d.shape == (2, 64) for d in deltas.values())
    assert adapter and all("lora_A" in k or "lora_B" in k for k in adapter)  # nothing else: no modules_to_save
    assert any(torch.count_nonzero(v) for k, v in adapter.items() if "lora_B" in k)  # LoRA trains too
    logged = int(log.split("trainable params: ")[1].split(" ")[0].replace(",", ""))
    assert logged == sum(v.numel() for v in adapter.values()) + 2 * 2 * 64
    start = weights(qwen25_untied)
    tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    init = combo(start["model.embed_tokens.weight"], tok, ["思考", "think"])
    assert not torch.allclose(deltas["model.embed_tokens.weight"][0], init)  # the row trained from its init

    base = AutoModelForCausalLM.from_pretrained(str(qwen25_untied), dtype=torch.float32)
    loaded = PeftModel.from_pretrained(base, str(out)).eval()
    ids = torch.tensor([tok.encode("<think>\nTwo.\n</think>\n\n4", add_special_tokens=False)])
    with torch.no_grad():
        logits = loaded(input_ids=ids).logits
    assert torch.equal(loaded.get_input_embeddings().weight[[THINK, END]], deltas["model.embed_tokens.weight"])
    merged = loaded.merge_and_unload()
    final = {k: v.detach() for k, v in merged.state_dict().items()}
    for key, delta in deltas.items():
        assert torch.equal(final[key][[THINK, END]], delta)
        keep = torch.ones(final[key].shape[0], dtype=torch.bool)
        keep[[THINK, END]] = False
        assert torch.equal(final[key][keep], start[key][keep])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_lora_without_block_is_stock_lf(qwen25_untied, think_data, tmp_path):
    """No `thinkplugin:` block: LF's own resize_vocab copies (modules_to_save), bit-identical to the plugin off."""
    runs = {}
    for name, env in (("on", {}), ("off", {"LF_THINKPLUGIN_DISABLE": "1"})):
        out = tmp_path / name
        cfg = lf_config(qwen25_untied, think_data, out, {}, finetuning_type="lora", lora_target="all",
                        add_tokens="<think>,</think>", max_steps=1, save_steps=10)
        del cfg["thinkplugin"]
        log = train_ok(cfg, tmp_path, env=env)
        assert "[lf_thinkplugin]" not in log
        config = json.loads((out / "adapter_config.json").read_text())
        assert sorted(config["modules_to_save"]) == ["embed_tokens", "lm_head"] and config["trainable_token_indices"] is None
        runs[name] = (out / "adapter_model.safetensors").read_bytes()
    assert runs["on"] == runs["off"]


@pytest.mark.slow
def test_lora_trainable_tokens_through_lf_native_hook(qwen25_untied, think_data, tmp_path, patched_lf):
    """LF carrying the upstream patch: the PEFT config goes through `register_peft_config_hook`, nothing patched."""
    out = tmp_path / "out"
    cfg = lf_config(qwen25_untied, think_data, out, {"token_init": SPECS}, finetuning_type="lora", lora_target="all",
                    max_steps=1, save_steps=10)
    log = train_ok(cfg, tmp_path, env=patched_lf, command=[sys.executable, "-c", SEAM_PROBE])
    assert "SEAM_MODE native []" in log and "Loading plugin thinkplugin" in log
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["modules_to_save"] is None
    assert config["trainable_token_indices"] == {"embed_tokens": [THINK, END], "lm_head": [THINK, END]}
