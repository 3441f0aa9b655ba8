"""The papers' published numbers as reference rows: values as printed, on our scale, under our names."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from instract_eval.encoding import Encoder
from instract_eval.errors import InputError
from instract_eval.leaderboard.reported import (
    LAP_TRANSFORM,
    load_reported,
    produced_metrics,
    reported_rows,
    reported_tasks,
    sources,
)
from instract_eval.results import describe_metrics
from instract_eval.tasks import load_registry, packaged_registry
from instract_eval.tasks.evaluate import evaluate_task

from ..tasks.test_classification_engine import rows_task
from ..tasks.test_evaluate_task import ConstantEverything
from ..tasks.test_mcq_engine import BrightnessModel

# The project's transcription, which the packaged copy must equal (a sibling of the checkout).
TRANSCRIPTION = Path(__file__).resolve().parents[3] / "shared" / "data" / "paper_results.yaml"


def row(task: str, method: str):
    matches = [r for r in reported_rows(task) if r.method == method]
    assert len(matches) == 1, [r.method for r in reported_rows(task)]
    return matches[0]


# --- values as printed, on our scale ----------------------------------------------------------

def test_instraction_table1_percentages_become_fractions_and_ranks_stay_ranks():
    viclip = row("instract-semantic", "ViCLIP")
    assert viclip.values == {"R@1": 0.147, "R@5": 0.612, "median_rank": 4.0}
    assert viclip.std == {} and viclip.paper == "instraction" and viclip.table == "Table 1"
    assert viclip.citation == ("InstrAction: Action-Centric Pretraining for Instructional Videos "
                               "(arXiv 2604.08762v1), Table 1")
    assert row("instract-logic", "ViCLIP").values == {"accuracy": 0.3}
    assert row("instract-semantic", "ViCLIP + InstrAction").values == {"R@1": 0.451, "R@5": 0.908, "median_rank": 2.0}


def test_null_cells_are_left_out_and_a_row_without_numbers_is_not_shown():
    semantic = [r.method for r in reported_rows("instract-semantic")]
    logic = [r.method for r in reported_rows("instract-logic")]
    assert "InstrAction (Order-Swapped HNs)" in semantic and "InstrAction (Order-Swapped HNs)" not in logic
    assert "InstrAction (Verb-Altered HNs)" in logic and "InstrAction (Verb-Altered HNs)" not in semantic
    # ActionFormer prints '-' at tIoU 0.4 and 0.6.
    assert set(row("tal-thumos14", "ActionFormer (pre-extracted, TSP/VM2-g)").values) == {
        "mAP@0.3", "mAP@0.5", "mAP@0.7", "average_mAP"}
    # ACE's random baseline has no seen or harmonic-mean numbers, but a std of 0 is a number.
    random = row("srt-ata", "Random")
    assert set(random.values) == {"unseen.accuracy", "unseen.macro_f1", "srt.unseen.accuracy", "srt.unseen.macro_f1"}
    assert random.std == {"srt.unseen.accuracy": 0.0, "srt.unseen.macro_f1": 0.0}
    # The vision-only ActionVLM has no LAP ('-'), only its mAPs.
    assert "LAP" not in row("lap-thumos14", "ActionVLM-S-3B, vision features only").values


def test_ace_mean_and_std_pairs_become_value_and_std():
    ace = row("srt-ata", "ACE")  # printed 'Ours'
    assert ace.values["srt.unseen.accuracy"] == 0.594 and ace.std["srt.unseen.accuracy"] == 0.032
    assert ace.values["srt.unseen.macro_f1"] == 0.433 and ace.std["srt.unseen.macro_f1"] == 0.042
    assert ace.values["hm.accuracy"] == 0.726 and ace.table == "Table 1, ATA"
    assert ace.citation == "ACE: Action Concept Enhancement of Video-Language Models in Procedural Videos, Table 1, ATA"
    assert row("srt-ikea", "ACE").std["srt.unseen.macro_f1"] == 0.042  # Table 1 prints 4.2 (Table 3: 4.3)
    lavila = row("srt-gtea", "LaVila")
    assert lavila.values == {"seen.accuracy": 0.96, "unseen.accuracy": 0.714, "hm.accuracy": 0.819,
                             "srt.unseen.accuracy": 0.375}
    assert lavila.std == {"srt.unseen.accuracy": 0.21} and lavila.table == "Table 6"


def test_actionvlm_localization_and_lap():
    best = row("tal-thumos14", "ActionVLM-B-3B (end2end - large vision encoder, VM2-B)")
    assert best.values["average_mAP"] == 0.742 and best.values["mAP@0.3"] == 0.888
    assert row("tal-activitynet13", "ActionVLM-B-3B (end2end - large vision encoder, VM2-B)").values == {
        "mAP@0.5": 0.588, "mAP@0.75": 0.406, "mAP@0.95": 0.102, "average_mAP": 0.397}
    assert row("lap-thumos14", "ActionVLM-S-3B").values["LAP"] == 0.026
    assert row("lap-thumos14", "VTimeLLM").values["LAP"] == 0.148
    assert row("tal-thumos14", "VTimeLLM").values["average_mAP"] == 0.334
    assert row("tal-epic100-verb", "ActionVLM-L-3B (VideoMAEv1-L)").values["average_mAP"] == 0.305
    assert row("tal-epic100-noun", "ActionVLM-L-3B (VideoMAEv1-L)").values["average_mAP"] == 0.3


def test_paxion_action100m_and_the_alignment_cost():
    assert row("actionbench-aa-ego4d", "InternVideo").values == {"accuracy": 0.588}
    assert row("actionbench-vr-ssv2", "Singularity-temporal + KP-Perceiver [VTC+DVDM]").values == {"accuracy": 0.688}
    assert row("actionbench-aa-ssv2", "Human").values == {"accuracy": 0.96}
    assert row("a100m-zs-ssv2", "VL-JEPA (Stage 3) ViT-L (256px)").values == {"accuracy": 0.193}
    assert row("a100m-t2v-msrvtt", "PE-Core ViT-G (448px)").values == {"t2v.R@1": 0.516}
    assert row("instract-alignment", "InstrAction Action Perceiver latents").values == {"normalized_dtw_cost": 0.91}


def test_rows_keep_the_papers_order_and_every_label_is_unique_within_its_task():
    assert [r.method for r in reported_rows("instract-dynamics")] == [
        "MIL-NCE", "UniVL", "PerceptionLM", "VideoPrism", "InstrAction"]
    thumos = reported_rows("tal-thumos14")
    assert [r.table for r in thumos] == ["Table 1, THUMOS14"] * 20 + ["Table 2"] * 2
    assert thumos[10].method == "ViT-TAD (end2end - small vision encoder, VM2-S)"  # split blocks keep row order
    for task in reported_tasks():
        labels = [r.method for r in reported_rows(task)]
        assert labels and len(labels) == len(set(labels)), task


def test_the_mapping_covers_the_papers_tasks_and_nothing_unknown():
    tasks = set(reported_tasks())
    registry = packaged_registry()
    assert tasks <= set(registry.tasks)
    # Object Replacement has no column in PAXION's Table 1; nothing else goes without a reference.
    assert set(registry.tasks) - tasks == {"actionbench-or-ego4d", "actionbench-or-ssv2"}
    assert reported_rows("no-such-task") == []


def test_sources_name_every_cited_paper_and_are_a_copy():
    papers = sources()
    assert {r.paper for task in reported_tasks() for r in reported_rows(task)} <= set(papers)
    assert papers["instraction"]["arxiv"] == "2604.08762v1" and papers["ace"]["arxiv"] is None
    assert papers["paxion"]["venue"] == "NeurIPS 2023 (as cited by InstrAction)"
    assert all(set(entry) == {"title", "arxiv", "venue", "short"} for entry in papers.values())
    assert {key: entry["short"] for key, entry in papers.items()} == {
        "instraction": "InstrAction", "ace": "ACE", "action100m": "Action100M", "paxion": "PAXION",
        "actionvlm": "ActionVLM"}
    papers["instraction"]["title"] = "changed"
    assert sources()["instraction"]["title"].startswith("InstrAction")


def test_rows_are_immutable_and_loading_is_cached():
    first = reported_rows("srt-ata")[0]
    with pytest.raises(TypeError):
        first.values["srt.unseen.accuracy"] = 1.0
    assert reported_rows("srt-ata")[0] is first


def test_the_packaged_transcription_is_the_projects_file_byte_for_byte():
    if not TRANSCRIPTION.is_file():
        pytest.skip(f"{TRANSCRIPTION} is not there")
    packaged = resources.files("instract_eval.leaderboard").joinpath("resources", "paper_results.yaml")
    assert packaged.read_bytes() == TRANSCRIPTION.read_bytes()


# --- our metric names are the engines' ---------------------------------------------------------

class TextAnsweringEverything(ConstantEverything):
    """Every capability, and a localizer that answers in text, so the hallucination rates are written too."""

    answers_in_text = True


def score_names(metrics) -> set[str]:
    return {name for name, described in describe_metrics(metrics).items() if described["unit"] != "count"}


def test_produced_metrics_are_what_each_engine_writes(world):
    registry = load_registry([world / "tasks.yaml"])
    specs = registry.resolve(["synth", "synth-alignment"])
    assert {spec.kind for spec in specs} == {"mcq", "retrieval", "classification", "localization", "alignment"}
    for spec in specs:
        result = evaluate_task(TextAnsweringEverything(), spec, environ={})
        assert score_names(result["metrics"]) == produced_metrics(spec), spec.name
    assert any(spec.transform == LAP_TRANSFORM for spec in specs)


def test_produced_metrics_of_label_rows_classification(tmp_path):
    from instract_eval.tasks.classification import evaluate_classification

    spec, task = rows_task(tmp_path, [{"video": "up", "label": "brighten"}, {"video": "down", "label": "darken"}])
    result = evaluate_classification(Encoder(BrightnessModel()), task, name=spec.name, protocol=spec.protocol)
    assert score_names(result["metrics"]) == produced_metrics(spec)


def test_the_lap_transform_is_the_engines():
    from instract_eval.tasks.localization import CONFLICTING_DESCRIPTIONS

    assert LAP_TRANSFORM == CONFLICTING_DESCRIPTIONS


# --- validation of the mapping -----------------------------------------------------------------

GOOD_BLOCK = {"paper": "instraction", "table": "Table 1", "scale": 0.01,
              "tasks": {"instract-semantic": {"r1": "R@1", "median_rank": {"metric": "median_rank", "scale": 1}}}}


def write_mapping(tmp_path, *blocks) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(yaml.safe_dump({"blocks": list(blocks)}))
    return path


def test_a_small_mapping_loads_from_a_path(tmp_path):
    rows = load_reported(write_mapping(tmp_path, GOOD_BLOCK))
    assert list(rows) == ["instract-semantic"]
    assert rows["instract-semantic"][0].values == {"R@1": 0.072, "median_rank": 6.0}


@pytest.mark.parametrize("change, message", [
    ({"table": "Table 12"}, r"no table 'Table 12' of paper 'instraction'"),
    ({"paper": "ace", "table": "Table 1"}, r"no table 'Table 1' of paper 'ace' \(parts: ATA, IKEA\)"),
    ({"tasks": {"instract-semantic": {"r10": "R@1"}}}, r"Table 1 has no metric 'r10'"),
    ({"tasks": {"instract-semantics": {"r1": "R@1"}}}, r"unknown task 'instract-semantics'"),
    ({"tasks": {"instract-semantic": {"r1": "R@10"}}}, r"the mcq engine writes no metric 'R@10'"),
    ({"tasks": {"instract-semantic": {"r1": "t2v.R@1"}}}, r"writes no metric 't2v.R@1'"),
    ({"scale": 1}, r"the paper's unit '%' is not our 'fraction' times 1"),
    ({"tasks": {"instract-semantic": {"median_rank": "median_rank"}}}, r"unit 'rank' is not our 'rank' times 0.01"),
    ({"tasks": {"instract-semantic": {"r1": "median_rank"}}}, r"unit '%' is not our 'rank'"),
    ({"where": {"method": "ViCLIPP"}}, r"no row of Table 1 has method = 'ViCLIPP'"),
    ({"rows": {"ViCLIPP": {"label": "x"}}}, r"Table 1 has no row 'ViCLIPP'"),
    ({"rows": {"ViCLIP": {"lable": "x"}}}, r"rows\.ViCLIP: expected a mapping with label and/or note"),
    ({"where": ["method"]}, r"blocks\[0\]\.where: expected a mapping"),
    ({"label": "{backbone}"}, r"label template '\{backbone\}' does not fit row 'MIL-NCE'"),
    ({"label": "InstrAct"}, r"two rows are labelled 'InstrAct'"),
    ({"scale": None}, r"expected a numeric scale"),
])
def test_a_broken_mapping_is_an_error_naming_the_field(tmp_path, change, message):
    with pytest.raises(InputError, match=message) as error:
        load_reported(write_mapping(tmp_path, {**GOOD_BLOCK, **change}))
    assert str(error.value).startswith(str(tmp_path / "mapping.yaml"))


def test_mean_std_needs_our_std_and_directions_must_agree(tmp_path):
    # ACE's SRT accuracy is mean ± std; the classification metric has a .std only for srt.*.
    wrong_std = {"paper": "ace", "table": "Table 3", "part": "ATA", "scale": 0.01,
                 "tasks": {"srt-ata": {"srt_unseen_acc": "unseen.accuracy"}}}
    with pytest.raises(InputError, match=r"prints mean ± std but task srt-ata has no 'unseen.accuracy.std'"):
        load_reported(write_mapping(tmp_path, wrong_std))
    # ActionVLM's hallucination rates are lower-is-better, an mAP higher-is-better.
    wrong_direction = {"paper": "actionvlm", "table": "Table 2", "scale": 0.01,
                       "tasks": {"tal-thumos14": {"fixed_rate": "mAP@0.3"}}}
    with pytest.raises(InputError, match=r"'fixed_rate' has higher_is_better: False, our 'mAP@0.3' is higher-is-better"):
        load_reported(write_mapping(tmp_path, wrong_direction))
    not_a_score = {"paper": "actionvlm", "table": "Table 3", "scale": 0.01,
                   "tasks": {"tal-thumos14": {"easy_mla": "average_mAP"}}}
    with pytest.raises(InputError, match=r"unit 'dimensionless' is not our 'fraction'"):
        load_reported(write_mapping(tmp_path, not_a_score))


def test_unreadable_files_are_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_reported(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("blocks: [")
    with pytest.raises(InputError, match="not valid YAML"):
        load_reported(tmp_path / "bad.yaml")
    (tmp_path / "flat.yaml").write_text("blocks: {}")
    with pytest.raises(InputError, match="blocks: expected a list"):
        load_reported(tmp_path / "flat.yaml")
