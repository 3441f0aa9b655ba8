"""Published weights to a local path: a card's tag resolved, downloaded once, checked, or refused in one line.

Three sources (`WeightTag.source`):

``hub``
    A Hugging Face hub repository at a pinned revision, through ``huggingface_hub`` (one file, or
    the whole repository for ``save_pretrained`` layouts), into its own cache.
``url``
    A plain URL, streamed into ``<cache>/weights/<sha256 or url hash>/<file name>`` through a
    temporary file, its sha256 checked when the card knows it, then renamed into place.
``user``
    Nothing can be downloaded (a login, a form, an expiring link): the error says where to get
    the file and which argument takes it.

Offline (``HF_HUB_OFFLINE=1``, ``INSTRACT_EVAL_OFFLINE=1``, or no network) a tag that is not in
the cache is one `InputError` line naming what to fetch and the ``checkpoint=`` argument that
takes the file instead. Every network call has a timeout, so nothing ever hangs.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from instract_eval.errors import InputError

from ..cards import ModelCard, WeightTag

__all__ = ["OFFLINE_VARIABLES", "is_offline", "weights_cache_dir", "fetch_tag", "pretrained_arguments", "side_file"]

OFFLINE_VARIABLES = ("INSTRACT_EVAL_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_TIMEOUT_S = 30
_FIELD = "--model-args"


def is_offline(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the user (or a test) has said there is no network."""
    return any(environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES)


def weights_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$INSTRACT_EVAL_CACHE/weights``, else ``~/.cache/instract-eval/weights``."""
    root = environ.get("INSTRACT_EVAL_CACHE") or os.path.join("~", ".cache", "instract-eval")
    return Path(os.path.expanduser(root)) / "weights"


def pretrained_arguments(name: str, card: ModelCard | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Factory arguments for ``pretrained=TAG``: ``checkpoint`` (and a base file) plus the tag's args.

    Arguments the user gave win over the tag's own, except ``checkpoint``: naming a tag and a file
    at once is ambiguous, so it is refused.
    """
    tag_name = kwargs.pop("pretrained")
    if card is None or not card.tags:
        raise InputError(f"model {name} has no published weight tags; give checkpoint=PATH", field=_FIELD)
    try:
        tag = card.tag(str(tag_name))
    except KeyError:
        known = ", ".join(t.name for t in card.tags)
        raise InputError(f"model {name} has no weight tag {tag_name!r} (tags: {known})", field=_FIELD) from None
    if kwargs.get("checkpoint") is not None:
        raise InputError(f"model {name}: give pretrained={tag.name} or checkpoint=PATH, not both", field=_FIELD)
    arguments = {**dict(tag.args), **kwargs, "checkpoint": str(fetch_tag(name, tag))}
    if tag.base is not None and arguments.get("clip_checkpoint") is None:
        arguments["clip_checkpoint"] = str(fetch_tag(name, card.tag(tag.base)))
    return arguments


def fetch_tag(name: str, tag: WeightTag, environ: Mapping[str, str] = os.environ) -> Path:
    """The local path of ``tag``'s weights, fetching them first when allowed."""
    if tag.source == "user":
        raise InputError(f"model {name} tag {tag.name}: the weights cannot be downloaded automatically; "
                         f"{tag.where}; then pass checkpoint=PATH", field=_FIELD)
    if tag.source == "hub":
        return _fetch_hub(name, tag, environ)
    return _fetch_url(name, tag, environ)


def _fetch_hub(name: str, tag: WeightTag, environ: Mapping[str, str]) -> Path:
    what = tag.location()
    try:
        import huggingface_hub
    except ImportError:
        raise InputError(f"model {name} tag {tag.name} is on the Hugging Face hub ({what}) and huggingface_hub "
                         "is not installed; pip install huggingface_hub, or download it yourself and pass "
                         "checkpoint=PATH", field=_FIELD) from None
    offline = is_offline(environ)
    try:
        if tag.filename:
            path = huggingface_hub.hf_hub_download(tag.hub_id, tag.filename, revision=tag.revision,
                                                   local_files_only=offline, etag_timeout=_TIMEOUT_S)
        else:
            path = huggingface_hub.snapshot_download(tag.hub_id, revision=tag.revision, local_files_only=offline,
                                                     etag_timeout=_TIMEOUT_S)
    except Exception as error:  # offline misses, network errors, gated repositories: all one line
        reason = "offline and not in the cache" if offline else _describe(error)
        raise InputError(f"model {name} tag {tag.name}: cannot fetch {what} ({reason}); download it "
                         "(huggingface-cli download ...) and pass checkpoint=PATH", field=_FIELD) from None
    return Path(path)


def _fetch_url(name: str, tag: WeightTag, environ: Mapping[str, str]) -> Path:
    assert tag.url is not None
    file_name = Path(urllib.request.urlparse(tag.url).path).name
    if file_name in ("", ".", ".."):
        file_name = "weights"
    folder = tag.sha256 or hashlib.sha256(tag.url.encode()).hexdigest()
    target = weights_cache_dir(environ) / folder / file_name
    if target.is_file():
        return target
    if is_offline(environ):
        raise InputError(f"model {name} tag {tag.name}: offline and {file_name} is not in the cache; download "
                         f"{tag.url} and pass checkpoint=PATH", field=_FIELD)
    created = [folder for folder in (target.parent, target.parent.parent) if not folder.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{file_name}.")
    kept = False
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(tag.url, timeout=_TIMEOUT_S) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if tag.sha256 and digest.hexdigest() != tag.sha256:
            raise InputError(f"model {name} tag {tag.name}: {tag.url} has sha256 {digest.hexdigest()}, expected "
                             f"{tag.sha256}; the file was not kept", field=_FIELD)
        os.replace(temporary, target)
        kept = True
    except (OSError, urllib.error.URLError, http.client.HTTPException, ValueError) as error:
        reason = _describe(error)
        raise InputError(f"model {name} tag {tag.name}: cannot download {tag.url} ({reason}); download it and "
                         "pass checkpoint=PATH", field=_FIELD) from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
        for folder in created if not kept else ():  # nothing of a failed download stays in the cache
            try:
                folder.rmdir()
            except OSError:
                pass
    return target


def _describe(error: BaseException) -> str:
    """``Type: first line`` of an exception, for one error line (some carry no message at all)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def side_file(family: str, value: str | os.PathLike | None, checkpoint: Path, *, name: str, argument: str,
              what: str, url: str | None = None) -> Path:
    """A file a model reads besides its checkpoint (a vocabulary, a word dictionary, a second
    network): ``value`` as a path, or as a URL fetched once into the weights cache, else ``name``
    beside the checkpoint. Each failure is one line saying what is missing and which argument
    takes it (``url``, where it is published, is named when the file is not found)."""
    if value is None:
        beside = checkpoint.parent / name
        if not beside.is_file():
            where = f" (published at {url})" if url else ""
            raise InputError(f"{family} needs {what}: no {name} beside the checkpoint; pass {argument}=PATH{where}",
                             path=checkpoint.parent, field=argument)
        return beside
    text = os.fspath(value)
    if urllib.parse.urlparse(text).scheme not in ("http", "https"):
        return Path(text)
    try:
        return fetch_tag(family, WeightTag(name=argument, source="url", url=text))
    except InputError as error:
        raise InputError(f"{family}: cannot fetch {what} {text} ({error.message}); download "
                         f"{Path(urllib.parse.urlparse(text).path).name or name} and pass {argument}=PATH",
                         field=argument) from None
