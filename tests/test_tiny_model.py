"""The demo's offline model: the self-built Qwen3-style tokenizer (no fixtures) still gets a template with parity."""

from transformers import AutoTokenizer

from lf_thinkplugin.demo.tiny_model import build_tiny_model


def test_self_built_tokenizer_is_qwen3_style_and_auto_picks_native(tmp_path, capsys):
    from lf_thinkplugin import register
    from lf_thinkplugin.templates.diagnose import resolve_template

    register()
    folder = build_tiny_model(tmp_path / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    think, close = tokenizer.convert_tokens_to_ids(["<think>", "</think>"])
    assert tokenizer.encode("<think>", add_special_tokens=False) == [think]
    assert tokenizer.decode([think, close], skip_special_tokens=True) == "<think></think>"  # not special
    assert tokenizer.eos_token == "<|im_end|>"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert resolve_template(str(folder)) == "native"  # its own Qwen3 template: only `native` has tool-call parity
    assert "template: auto -> native" in capsys.readouterr().out
