"""Model ids resolved as LF resolves them: folders as they are, hub ids from the HF cache with LF's
`cache_dir` and `model_revision`, offline; a missing id names the fix."""

from __future__ import annotations

import pytest
from hf_cache import commit_of, snapshot_dir

from lf_thinkplugin.loading.hub import ModelNotFound, ModelRef, local_dir
from lf_thinkplugin.options import OptionsError


def test_lf_cache_dir_and_revision_pick_the_snapshot(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent")  # LF's cache_dir wins over the environment
    repo = "Qwen/Qwen3-0.6B"
    want = snapshot_dir(hub_cache, repo)
    for revision in (None, "main", commit_of(repo)):
        ref = ModelRef.from_lf_args({"model_name_or_path": repo, "cache_dir": str(hub_cache), "model_revision": revision})
        assert local_dir(ref) == want
    with pytest.raises(ModelNotFound, match=r"`model_name_or_path: Qwen/Qwen3-0.6B` \(revision v9\) is not in "):
        local_dir(ModelRef.from_lf_args({"model_name_or_path": repo, "cache_dir": str(hub_cache), "model_revision": "v9"}))


def test_folders_pass_through_and_bad_names_are_refused(tmp_path):
    assert local_dir(str(tmp_path)) == tmp_path
    with pytest.raises(ModelNotFound, match="no such folder") as err:
        local_dir(str(tmp_path / "missing"))
    assert isinstance(err.value, OptionsError)  # a refusal: exit 2 on the command line
    with pytest.raises(ModelNotFound, match="`model_name_or_path` is not set"):
        ModelRef.from_lf_args({})


def test_modelscope_and_modelers_go_through_lf_s_download(tmp_path, monkeypatch):
    """USE_MODELSCOPE_HUB / USE_OPENMIND_HUB: LF's own download with LF's arguments; a failure names the hub."""
    import llamafactory.extras.misc as misc

    asked = []

    def download(model_args):
        asked.append((model_args.model_name_or_path, model_args.model_revision, model_args.cache_dir, model_args.ms_hub_token))
        if model_args.model_name_or_path == "org/missing":
            raise ValueError("not found")
        return str(tmp_path)

    monkeypatch.setattr(misc, "try_download_model_from_other_hub", download)
    monkeypatch.setenv("USE_MODELSCOPE_HUB", "1")
    ref = ModelRef.from_lf_args({"model_name_or_path": "Qwen/Qwen3-0.6B", "model_revision": "v1", "cache_dir": "/c",
                                 "ms_hub_token": "t"})
    assert local_dir(ref) == tmp_path
    assert asked == [("Qwen/Qwen3-0.6B", "v1", "/c", "t")]
    monkeypatch.delenv("USE_MODELSCOPE_HUB")
    monkeypatch.setenv("USE_OPENMIND_HUB", "true")
    with pytest.raises(ModelNotFound, match=r"`model_name_or_path: org/missing`: cannot get it from Modelers \(not found\)"):
        local_dir("org/missing")
