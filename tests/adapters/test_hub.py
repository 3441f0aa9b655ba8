"""Weight tags to local files (`instract_eval.adapters.core.hub`) and ``create_model(pretrained=TAG)``.

No test reaches a network: every one runs with socket connections and name lookups made to fail
loudly, and the url tags use ``file://`` URLs.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import socket
import time

import pytest

from instract_eval.adapters import registry
from instract_eval.adapters.cards import ModelCard, WeightTag
from instract_eval.adapters.core import hub
from instract_eval.adapters.core.hub import fetch_tag, is_offline, weights_cache_dir
from instract_eval.adapters.registry import available_models, create_model, register_model
from instract_eval.errors import InputError

HUB_ID = "instract-eval-tests/tiny-model-that-is-nowhere"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection or name lookup fails the test at once (and says so)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network call was made: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """A private, empty Hugging Face hub cache (huggingface_hub imported before any clock starts)."""
    from huggingface_hub import constants

    root = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private ``$INSTRACT_EVAL_CACHE``."""
    root = tmp_path / "cache"
    monkeypatch.setenv("INSTRACT_EVAL_CACHE", str(root))
    return root


@pytest.fixture
def online(monkeypatch):
    """No offline variable set (the url path then downloads; file:// needs no network)."""
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def isolated(monkeypatch):
    """A private copy of the registry, so the throwaway models registered here do not leak."""
    available_models()  # the built-ins are in before the copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_LOADED_ENTRY_POINTS", {})


def published(tmp_path, data: bytes = b"tiny weights\n", name: str = "tiny-weights.pt"):
    """A file standing in for published weights: (file:// url, sha256, path)."""
    source = tmp_path / "published" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(data)
    return source.as_uri(), hashlib.sha256(data).hexdigest(), source


def one_line(error: pytest.ExceptionInfo, *parts: str) -> str:
    text = str(error.value)
    assert isinstance(error.value, InputError) and "\n" not in text, text
    assert text.startswith("--model-args: "), text
    for part in parts:
        assert part in text, (part, text)
    return text


# ------------------------------------------------------------------------------------------------
# hub tags


def test_offline_a_hub_tag_not_in_the_cache_is_one_quick_line(hf_cache):
    assert is_offline()  # tests/conftest.py sets HF_HUB_OFFLINE=1
    started = time.perf_counter()
    for tag in (WeightTag("file", "hub", hub_id=HUB_ID, filename="model.safetensors", revision="v1"),
                WeightTag("repo", "hub", hub_id=HUB_ID)):
        with pytest.raises(InputError) as error:
            fetch_tag("tiny", tag)
        where = f"{HUB_ID}/model.safetensors@v1" if tag.filename else f"{HUB_ID} ("
        one_line(error, f"model tiny tag {tag.name}: cannot fetch hub {where}", "offline and not in the cache",
                 "huggingface-cli download", "pass checkpoint=PATH")
    assert time.perf_counter() - started < 5


def test_instract_eval_offline_alone_keeps_the_hub_off_the_network(monkeypatch, hf_cache):
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTRACT_EVAL_OFFLINE", "yes")
    with pytest.raises(InputError) as error:
        fetch_tag("tiny", WeightTag("file", "hub", hub_id=HUB_ID, filename="model.safetensors"))
    one_line(error, f"hub {HUB_ID}/model.safetensors", "offline and not in the cache", "checkpoint=PATH")


def test_offline_a_hub_tag_in_the_cache_resolves(hf_cache):
    root = hf_cache
    repo = root / f"models--{HUB_ID.replace('/', '--')}"
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "model.safetensors").write_bytes(b"weights")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    path = fetch_tag("tiny", WeightTag("file", "hub", hub_id=HUB_ID, filename="model.safetensors"))
    assert path.read_bytes() == b"weights" and path.name == "model.safetensors"
    pinned = fetch_tag("tiny", WeightTag("pinned", "hub", hub_id=HUB_ID, filename="model.safetensors",
                                         revision=COMMIT))
    assert pinned.resolve() == path.resolve()
    folder = fetch_tag("tiny", WeightTag("repo", "hub", hub_id=HUB_ID))
    assert folder.is_dir() and (folder / "model.safetensors").read_bytes() == b"weights"


@pytest.mark.parametrize("failure", [TimeoutError(), RuntimeError("401 Client Error: gated repo\nvisit the page")])
def test_online_a_hub_failure_is_one_line_even_without_a_message(monkeypatch, online, failure):
    import huggingface_hub

    seen = {}

    def fail(*args, **kwargs):
        seen.update(kwargs)
        raise failure

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fail)
    with pytest.raises(InputError) as error:
        fetch_tag("tiny", WeightTag("file", "hub", hub_id=HUB_ID, filename="model.safetensors", revision=COMMIT))
    reason = "TimeoutError" if isinstance(failure, TimeoutError) else "RuntimeError: 401 Client Error: gated repo"
    one_line(error, f"cannot fetch hub {HUB_ID}/model.safetensors@{COMMIT} ({reason})", "pass checkpoint=PATH")
    assert seen["local_files_only"] is False and seen["revision"] == COMMIT and seen["etag_timeout"] > 0


def test_the_builtin_clip_tags_offline_name_what_to_fetch(cache, hf_cache):
    with pytest.raises(InputError) as error:
        create_model("clip", pretrained="vit-b-32")
    one_line(error, "model clip tag vit-b-32: offline and ViT-B-32.pt is not in the cache",
             "download https://openaipublic.azureedge.net/clip/models/40d36571",
             "/ViT-B-32.pt and pass checkpoint=PATH")
    with pytest.raises(InputError) as error:
        create_model("clip", pretrained="hf-vit-b-32")
    one_line(error, "cannot fetch hub openai/clip-vit-base-patch32", "checkpoint=PATH")
    assert not cache.exists()


# ------------------------------------------------------------------------------------------------
# url tags


def test_a_url_tag_downloads_into_the_cache_by_sha256_once(tmp_path, cache, online):
    url, sha, source = published(tmp_path)
    tag = WeightTag("tiny", "url", url=url, sha256=sha)
    path = fetch_tag("tiny", tag)
    assert path == cache / "weights" / sha / "tiny-weights.pt" == weights_cache_dir() / sha / "tiny-weights.pt"
    assert path.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny-weights.pt"]  # no temporary left
    source.unlink()  # the second time it is not fetched again: online ...
    assert fetch_tag("tiny", tag) == path
    for name, value in (("INSTRACT_EVAL_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1")):  # ... or offline
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(name, value)
            assert fetch_tag("tiny", tag) == path


def test_the_weights_cache_follows_instract_eval_cache_with_a_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert weights_cache_dir({"INSTRACT_EVAL_CACHE": "~/models"}) == tmp_path / "models" / "weights"
    assert weights_cache_dir({}) == tmp_path / ".cache" / "instract-eval" / "weights"


def test_a_url_tag_without_a_sha256_is_cached_under_the_hash_of_its_url(tmp_path, cache, online):
    url, _, _ = published(tmp_path, name="other.bin")
    path = fetch_tag("tiny", WeightTag("tiny", "url", url=url))
    assert path == cache / "weights" / hashlib.sha256(url.encode()).hexdigest() / "other.bin"


def test_a_sha256_mismatch_is_one_line_and_leaves_nothing(tmp_path, cache, online):
    url, sha, _ = published(tmp_path, b"tampered")
    expected = hashlib.sha256(b"the real weights").hexdigest()
    with pytest.raises(InputError) as error:
        fetch_tag("tiny", WeightTag("v1", "url", url=url, sha256=expected))
    one_line(error, f"model tiny tag v1: {url} has sha256 {sha}, expected {expected}; the file was not kept")
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]
    assert not (cache / "weights" / expected).exists()


def test_a_download_cut_short_is_one_line_and_leaves_nothing(tmp_path, cache, online, monkeypatch):
    class CutShort(io.BytesIO):
        def read(self, size=-1):
            data = super().read(4)
            if not data:
                raise http.client.IncompleteRead(b"half", 100)
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(hub.urllib.request, "urlopen", lambda url, timeout: CutShort(b"half"))
    url = "https://example.invalid/w.pt"
    with pytest.raises(InputError) as error:
        fetch_tag("tiny", WeightTag("v1", "url", url=url, sha256="0" * 64))
    one_line(error, f"model tiny tag v1: cannot download {url} (IncompleteRead", "pass checkpoint=PATH")
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def test_a_url_that_does_not_answer_is_one_line(tmp_path, cache, online):
    url = (tmp_path / "nowhere.pt").as_uri()
    with pytest.raises(InputError) as error:
        fetch_tag("tiny", WeightTag("v1", "url", url=url))
    one_line(error, f"model tiny tag v1: cannot download {url}", "download it and pass checkpoint=PATH")
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def test_offline_a_url_tag_not_in_the_cache_names_the_url(tmp_path, cache):
    url, sha, _ = published(tmp_path)
    with pytest.raises(InputError) as error:
        fetch_tag("tiny", WeightTag("v1", "url", url=url, sha256=sha))
    one_line(error, "model tiny tag v1: offline and tiny-weights.pt is not in the cache",
             f"download {url} and pass checkpoint=PATH")
    assert not cache.exists()


def test_a_user_provided_tag_says_where_to_get_the_file():
    tag = WeightTag("k400", "user", where="request access at https://example.org/form (Google Drive link)")
    with pytest.raises(InputError) as error:
        fetch_tag("tiny", tag)
    one_line(error, "model tiny tag k400: the weights cannot be downloaded automatically",
             "request access at https://example.org/form (Google Drive link)", "then pass checkpoint=PATH")


# ------------------------------------------------------------------------------------------------
# create_model(name, pretrained=TAG)


@pytest.fixture
def toy(isolated, tmp_path, cache, online):
    """``toy``: a registered model whose card has a url tag, one with a base, and a user tag."""
    url, sha, _ = published(tmp_path, b"fine-tuned", "finetuned.pth")
    base_url, base_sha, _ = published(tmp_path, b"clip base", "base.pt")
    card = ModelCard(family="toy", capabilities=("dual_encoder",), tags=(
        WeightTag("base", "url", url=base_url, sha256=base_sha),
        WeightTag("ft", "url", url=url, sha256=sha, args={"head": "meanP", "frames": 12}, base="base"),
        WeightTag("solo", "url", url=url, sha256=sha),
        WeightTag("gated", "user", where="ask the authors"),
        WeightTag("needs-gated", "url", url=url, sha256=sha, base="gated"),
    ))
    calls = []

    @register_model("toy", card=card)
    def make_toy(checkpoint=None, clip_checkpoint=None, head="plain", frames=8):
        calls.append({"checkpoint": checkpoint, "clip_checkpoint": clip_checkpoint, "head": head, "frames": frames})
        return object()

    return calls, cache / "weights" / sha / "finetuned.pth", cache / "weights" / base_sha / "base.pt"


def test_pretrained_passes_the_fetched_checkpoint_and_the_tags_args(toy):
    calls, file, base = toy
    create_model("toy", pretrained="solo")
    assert calls[-1] == {"checkpoint": str(file), "clip_checkpoint": None, "head": "plain", "frames": 8}
    create_model("toy", pretrained="ft")
    assert calls[-1] == {"checkpoint": str(file), "clip_checkpoint": str(base), "head": "meanP", "frames": 12}
    assert file.read_bytes() == b"fine-tuned" and base.read_bytes() == b"clip base"
    create_model("toy", pretrained="ft", frames=4)  # the user's arguments win over the tag's
    assert calls[-1]["frames"] == 4 and calls[-1]["head"] == "meanP"


def test_a_base_file_the_user_gives_is_used_and_not_fetched(toy, tmp_path):
    calls, file, _ = toy
    mine = str(tmp_path / "my-base.pt")
    create_model("toy", pretrained="needs-gated", clip_checkpoint=mine)  # its base is a user tag: not fetched
    assert calls[-1]["clip_checkpoint"] == mine and calls[-1]["checkpoint"] == str(file)
    with pytest.raises(InputError) as error:
        create_model("toy", pretrained="needs-gated")
    one_line(error, "model toy tag gated: the weights cannot be downloaded automatically", "ask the authors")


def test_an_unknown_tag_lists_the_known_ones(toy):
    calls, _, _ = toy
    with pytest.raises(InputError) as error:
        create_model("toy", pretrained="vit-h")
    one_line(error, "model toy has no weight tag 'vit-h' (tags: base, ft, solo, gated, needs-gated)")
    assert calls == []


def test_pretrained_and_checkpoint_together_are_refused(toy, tmp_path):
    calls, _, _ = toy
    with pytest.raises(InputError) as error:
        create_model("toy", pretrained="solo", checkpoint=str(tmp_path / "mine.pt"))
    one_line(error, "model toy: give pretrained=solo or checkpoint=PATH, not both")
    assert calls == []


def test_pretrained_on_a_model_without_tags_says_to_give_a_file(isolated):
    @register_model("untagged", card=ModelCard(family="untagged", capabilities=("dual_encoder",)))
    def make(checkpoint=None):
        return object()

    with pytest.raises(InputError) as error:
        create_model("untagged", pretrained="v1")
    one_line(error, "model untagged has no published weight tags; give checkpoint=PATH")
