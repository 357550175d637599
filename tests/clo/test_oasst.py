"""The paper's oasst1 selection on a small hand-built message forest."""

import gzip
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clo.errors import CloError
from clo.oasst import load_oasst1, select_top_single_turn

REPO_ROOT = Path(__file__).resolve().parents[2]


def msg(mid, parent, role, text, lang="en", rank=None, quality=None, **extra):
    """One oasst1 message row with the columns the selection reads."""
    labels = None
    if quality is not None:
        labels = {"name": ["spam", "quality", "humor"], "value": [0.0, quality, 0.1]}
    row = {
        "message_id": mid,
        "parent_id": parent,
        "message_tree_id": (parent or mid)[:1],
        "role": role,
        "text": text,
        "lang": lang,
        "rank": rank,
        "deleted": False,
        "review_result": True,
        "synthetic": False,
        "labels": labels,
    }
    row.update(extra)
    return row


def forest():
    return [
        # A: the best reply overall; a higher-quality rank-1 sibling must not win.
        msg("a", None, "prompter", "Prompt A?", quality=0.6),
        msg("a0", "a", "assistant", "Reply A0.", rank=0, quality=0.9),
        msg("a1", "a", "assistant", "Reply A1.", rank=1, quality=0.95),
        msg("a00", "a0", "prompter", "Follow-up to A0?"),  # deeper turns are ignored
        msg("a000", "a00", "assistant", "Deep reply.", rank=0, quality=1.0),
        # B, E, F tie on reply quality 0.7: prompt quality, then message_id break ties.
        msg("b", None, "prompter", "Prompt B?", quality=0.8),
        msg("b0", "b", "assistant", "Reply B0.", rank=0, quality=0.7),
        msg("b1", "b", "assistant", "Reply B1.", rank=1, quality=0.8),
        msg("f", None, "prompter", "Prompt F?", quality=0.5),
        msg("f0", "f", "assistant", "Reply F0.", rank=0, quality=0.7),
        msg("e", None, "prompter", "Prompt E?", quality=0.5),
        msg("e0", "e", "assistant", "Reply E0.", rank=0, quality=0.7),
        # C: a German root, although its reply is the best of all.
        msg("c", None, "prompter", "Frage C?", lang="de"),
        msg("c0", "c", "assistant", "Antwort C0.", lang="de", rank=0, quality=1.0),
        # D: the rank-0 reply was deleted; the rank-1 reply must not replace it.
        msg("d", None, "prompter", "Prompt D?"),
        msg("d0", "d", "assistant", "Reply D0.", rank=0, quality=0.99, deleted=True),
        msg("d1", "d", "assistant", "Reply D1.", rank=1, quality=0.99),
        # G: the prompt failed review. H: the reply is synthetic. J: no ranked reply.
        msg("g", None, "prompter", "Prompt G?", review_result=False),
        msg("g0", "g", "assistant", "Reply G0.", rank=0, quality=0.99),
        msg("h", None, "prompter", "Prompt H?"),
        msg("h0", "h", "assistant", "Reply H0.", rank=0, quality=0.99, synthetic=True),
        msg("j", None, "prompter", "Prompt J?"),
        msg("j0", "j", "assistant", "Reply J0.", rank=None, quality=0.99),
        # K: the same prompt text as A (spacing/case differ), lower quality: a duplicate.
        msg("k", None, "prompter", "prompt  a?"),
        msg("k0", "k", "assistant", "Reply K0.", rank=0, quality=0.2),
        # I: a reply without labels sorts after every labelled one.
        msg("i", None, "prompter", "Prompt I?"),
        msg("i0", "i", "assistant", "Reply I0.", rank=0),
        # L: an English prompt answered in Spanish.
        msg("l", None, "prompter", "Prompt L?"),
        msg("l0", "l", "assistant", "Respuesta L0.", lang="es", rank=0, quality=0.99),
    ]


EXPECTED = [
    ("Prompt A?", "Reply A0."),
    ("Prompt B?", "Reply B0."),
    ("Prompt E?", "Reply E0."),
    ("Prompt F?", "Reply F0."),
    ("Prompt I?", "Reply I0."),
]


def as_tuples(examples):
    return [(e.prompt, e.response) for e in examples]


def test_selects_rank0_english_single_turn_highest_quality_first():
    assert as_tuples(select_top_single_turn(forest(), 100)) == EXPECTED


def test_selection_does_not_depend_on_row_order():
    rows = forest()
    random.Random(3).shuffle(rows)
    assert as_tuples(select_top_single_turn(rows, 100)) == EXPECTED


def test_n_takes_the_top_of_the_order():
    assert as_tuples(select_top_single_turn(forest(), 3)) == EXPECTED[:3]
    with pytest.raises(CloError, match=">= 1"):
        select_top_single_turn(forest(), 0)


def test_load_from_jsonl_gz_and_parquet_exports(tmp_path):
    rows = forest()
    plain = tmp_path / "messages.jsonl"
    plain.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    packed = tmp_path / "messages.jsonl.gz"
    with gzip.open(packed, "wt", encoding="utf-8") as fh:
        fh.write(plain.read_text(encoding="utf-8"))
    parquet_dir = tmp_path / "hub_snapshot"  # a folder of parquet shards, as on the Hub
    parquet_dir.mkdir()
    parquet = parquet_dir / "train-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    for path in (plain, packed, parquet, parquet_dir):
        assert as_tuples(load_oasst1(4, path=path)) == EXPECTED[:4], path


def test_load_from_datasets_save_to_disk(tmp_path):
    import datasets

    datasets.Dataset.from_list(forest()).save_to_disk(str(tmp_path / "oasst1"))
    assert as_tuples(load_oasst1(100, path=tmp_path / "oasst1")) == EXPECTED


def test_load_from_trees_export(tmp_path):
    """The nested "trees" export: one tree per line, replies inside their parent."""
    rows = forest()
    children: dict = {}
    for r in rows:
        children.setdefault(r["parent_id"], []).append(r)

    def nest(row):
        node = {k: v for k, v in row.items() if k != "parent_id"}
        node["replies"] = [nest(c) for c in children.get(row["message_id"], [])]
        return node

    trees = [{"message_tree_id": r["message_id"], "prompt": nest(r)} for r in children[None]]
    path = tmp_path / "trees.jsonl"
    path.write_text("\n".join(json.dumps(t) for t in trees), encoding="utf-8")
    assert as_tuples(load_oasst1(100, path=path)) == EXPECTED


def test_bad_exports_are_clear_errors(tmp_path):
    with pytest.raises(CloError, match="not found"):
        load_oasst1(5, path=tmp_path / "nope.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(forest()[0]) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(CloError, match="line 2"):
        load_oasst1(5, path=broken)
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(CloError, match="unsupported"):
        load_oasst1(5, path=csv)


def test_offline_without_a_path_names_the_fix(tmp_path):
    # A fresh interpreter: the Hub's offline switch is read when datasets is imported.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
    }
    code = (
        "from clo.errors import CloError\n"
        "from clo.oasst import load_oasst1\n"
        "try:\n"
        "    load_oasst1(5)\n"
        "except CloError as exc:\n"
        "    print('CLOERROR', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "CLOERROR" in out.stdout, out.stderr[-2000:]
    assert "--oasst-path" in out.stdout
