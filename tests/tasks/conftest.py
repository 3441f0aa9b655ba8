"""Shared fixtures of the task-engine tests."""

from __future__ import annotations

import pytest

from instract_eval.synth import generate_world


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """The tiny synthetic world (seed 0), generated once; tests that change files work on a copy."""
    out = tmp_path_factory.mktemp("synth") / "world"
    generate_world(out, seed=0, size="tiny")
    return out
