"""``vl-jepa`` and ``timemarker``: listed as unsupported with the reason, and refusing with it."""

from __future__ import annotations

import pytest

from instract_eval.adapters import available_models, card_of, create_model
from instract_eval.adapters.cards import UNSUPPORTED
from instract_eval.cli import main
from instract_eval.errors import InputError


@pytest.mark.parametrize("name", ["vl-jepa", "timemarker"])
def test_listed_unsupported_with_the_reason(name):
    card = card_of(name)
    assert card.status == UNSUPPORTED and "no published weights" in card.status_reason
    assert name in {entry.name for entry in available_models()}
    with pytest.raises(InputError, match="no published weights"):
        create_model(name)
    with pytest.raises(InputError, match=f"model {name} is unsupported"):
        create_model(name, checkpoint="/some/file.pt")


@pytest.mark.parametrize("name", ["vl-jepa", "timemarker"])
def test_list_models_shows_the_reason(name, capsys):
    try:
        main(["list", "models", name, "--details"])
    except SystemExit as exit:
        assert not exit.code
    out = " ".join(capsys.readouterr().out.split())
    assert name in out and "unsupported" in out
    assert "no published weights" in out


def test_the_models_table_says_no_weights_are_published_not_none_needed(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line
    try:
        main(["list", "models"])
    except SystemExit as exit:
        assert not exit.code
    rows = [line for line in capsys.readouterr().out.splitlines() if "vl-jepa" in line or "timemarker" in line]
    assert len(rows) == 2 and all("none published" in row and "none needed" not in row for row in rows), rows
