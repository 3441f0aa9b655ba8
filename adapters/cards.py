"""Model cards: what a registered model is, declared as data (the timm ``PretrainedCfg`` idea).

A card is read without building anything, so ``instract-eval list models`` can say what every
model does, where its weights come from and under which licence, without importing torch
modules or touching the network. It holds:

- the capabilities, declared statically (the registry checks them against the built model);
- the published weights as `WeightTag`\\ s: a hub id with its revision, a URL with its sha256, or
  a file the user must fetch, with where from and which argument takes it;
- each tag's `FrameSpec` (how the official code prepares frames), tokenizer, licences, paper,
  citation and a status (`SUPPORTED`, `NEEDS_USER_WEIGHTS`, `UNSUPPORTED` with the reason);
- ``code_version``: bumped when a port's outputs change, and part of the model fingerprint, so a
  fixed port never reads outputs cached by the broken one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the media package imports torch; a card is read without it
    from instract_eval.media import FrameSpec

__all__ = ["SUPPORTED", "NEEDS_USER_WEIGHTS", "UNSUPPORTED", "STATUSES", "WeightTag", "ModelCard"]

SUPPORTED = "supported"
NEEDS_USER_WEIGHTS = "needs user weights"
UNSUPPORTED = "unsupported"
STATUSES = (SUPPORTED, NEEDS_USER_WEIGHTS, UNSUPPORTED)
_SOURCES = ("hub", "url", "user")


@dataclass(frozen=True)
class WeightTag:
    """One published set of weights of a model, and how to get it.

    ``source`` is ``"hub"`` (``hub_id`` at ``revision``, optionally one ``filename`` in it; without a
    filename the whole repository is the checkpoint, as for ``save_pretrained`` directories),
    ``"url"`` (``url``, checked against ``sha256`` when known) or ``"user"`` (no download is
    possible: ``where`` says exactly where to get the file and which argument takes it).
    ``args`` are factory arguments the tag implies (a head type, a frame count). ``frame_spec``
    is the official preprocessing of this tag (None: the card's). ``base`` names another tag of
    the same card whose file the factory also needs (``clip_checkpoint``), for fine-tuned files
    that lack the weights they were trained on top of.
    """

    name: str
    source: str
    hub_id: str | None = None
    revision: str | None = None
    filename: str | None = None
    url: str | None = None
    sha256: str | None = None
    where: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)
    frame_spec: FrameSpec | None = None
    base: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if self.source not in _SOURCES:
            raise ValueError(f"tag {self.name}: source must be one of {_SOURCES}, got {self.source!r}")
        if self.source == "hub" and not self.hub_id:
            raise ValueError(f"tag {self.name}: a hub tag needs hub_id")
        if self.source == "url" and not self.url:
            raise ValueError(f"tag {self.name}: a url tag needs url")
        if self.source == "user" and not self.where:
            raise ValueError(f"tag {self.name}: a user-provided tag must say where to get the file")

    def location(self) -> str:
        """Where the weights are, in one phrase (for listings and error lines)."""
        if self.source == "hub":
            path = f"{self.hub_id}/{self.filename}" if self.filename else self.hub_id
            return f"hub {path}" + (f"@{self.revision}" if self.revision else "")
        if self.source == "url":
            return f"url {self.url}" + (f" (sha256 {self.sha256[:12]}…)" if self.sha256 else "")
        return f"provided by the user: {self.where}"


@dataclass(frozen=True)
class ModelCard:
    """Everything said about a registered model without building it; see the module docstring."""

    family: str
    capabilities: tuple[str, ...]
    description: str = ""
    tags: tuple[WeightTag, ...] = ()
    default_tag: str | None = None
    frame_spec: FrameSpec | None = None
    tokenizer: str = ""
    code_licence: str = ""
    weights_licence: str = ""
    paper: str = ""
    citation: str = ""
    status: str = SUPPORTED
    status_reason: str = ""
    code_version: str = "1"
    checkpoint_formats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", tuple(self.capabilities))
        object.__setattr__(self, "tags", tuple(self.tags))
        if self.status not in STATUSES:
            raise ValueError(f"{self.family}: status must be one of {STATUSES}, got {self.status!r}")
        if self.status != SUPPORTED and not self.status_reason:
            raise ValueError(f"{self.family}: a status of {self.status!r} needs its reason")
        names = [tag.name for tag in self.tags]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.family}: duplicate tag names in {names}")
        if self.default_tag is not None and self.default_tag not in names:
            raise ValueError(f"{self.family}: default tag {self.default_tag!r} is not one of {names}")
        for tag in self.tags:
            if tag.base is not None and tag.base not in names:
                raise ValueError(f"{self.family}: tag {tag.name} names base {tag.base!r}, not a tag of the card")

    def tag(self, name: str) -> WeightTag:
        """The tag called ``name``; `KeyError` when there is none."""
        for tag in self.tags:
            if tag.name == name:
                return tag
        raise KeyError(name)

    def frame_spec_of(self, tag: str | None) -> FrameSpec | None:
        """The preprocessing of ``tag`` (or of the card when the tag states none)."""
        if tag is not None:
            spec = self.tag(tag).frame_spec
            if spec is not None:
                return spec
        return self.frame_spec

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready view (for ``list models --details --json`` and result records)."""
        def spec(value: FrameSpec | None) -> str | None:
            return None if value is None else value.key()

        return {
            "family": self.family, "description": self.description, "capabilities": list(self.capabilities),
            "status": self.status, "status_reason": self.status_reason, "default_tag": self.default_tag,
            "tags": [{"name": t.name, "location": t.location(), "args": dict(t.args), "base": t.base,
                      "frame_spec": spec(t.frame_spec), "notes": t.notes} for t in self.tags],
            "frame_spec": spec(self.frame_spec), "tokenizer": self.tokenizer, "code_licence": self.code_licence,
            "weights_licence": self.weights_licence, "paper": self.paper, "citation": self.citation,
            "code_version": self.code_version, "checkpoint_formats": list(self.checkpoint_formats),
        }
