"""Quadruples, the two CLO preference directions, NLL records and the heldout split."""

import pytest

from clo.errors import CloError
from clo.pairs import Quadruple, nll_record, preference_pairs, split_heldout

Q = Quadruple(
    x_en="How are you?", y_en="I am fine.", x_tgt="Wie geht es dir?", y_tgt="Mir geht es gut."
)


def test_english_pair_keeps_english_and_target_pair_transfers():
    en_pair, tgt_pair = preference_pairs(Q)
    assert en_pair.direction == "en"
    assert (en_pair.prompt, en_pair.chosen, en_pair.rejected) == (Q.x_en, Q.y_en, Q.y_tgt)
    assert tgt_pair.direction == "tgt"
    assert (tgt_pair.prompt, tgt_pair.chosen, tgt_pair.rejected) == (Q.x_tgt, Q.y_tgt, Q.y_en)


def test_nll_is_target_only_unless_the_ablation_asks_for_english():
    assert nll_record(Q) == ((Q.x_tgt, Q.y_tgt),)
    assert nll_record(Q, include_english=True) == ((Q.x_tgt, Q.y_tgt), (Q.x_en, Q.y_en))


def test_quadruple_dict_round_trip_and_validation():
    data = Q.to_dict()
    assert data == {"x_en": Q.x_en, "y_en": Q.y_en, "x_tgt": Q.x_tgt, "y_tgt": Q.y_tgt}
    assert Quadruple.from_dict({**data, "id": "s001"}) == Q
    with pytest.raises(CloError, match="y_tgt"):
        Quadruple.from_dict({k: v for k, v in data.items() if k != "y_tgt"})
    with pytest.raises(CloError, match="x_en"):
        Quadruple.from_dict({**data, "x_en": "  "})


def test_split_is_deterministic_disjoint_and_keeps_order():
    items = list(range(50))
    train, heldout = split_heldout(items, 0.2, seed=7)
    assert len(heldout) == 10 and len(train) == 40
    assert sorted(train + heldout) == items
    assert train == sorted(train) and heldout == sorted(heldout)
    assert split_heldout(items, 0.2, seed=7) == (train, heldout)
    # Another seed picks a different heldout set (50 choose 10 makes a collision negligible).
    assert split_heldout(items, 0.2, seed=8)[1] != heldout


def test_split_by_size_and_default_fraction():
    items = [f"ex{i}" for i in range(30)]
    train, heldout = split_heldout(items, size=4, seed=1)
    assert len(heldout) == 4 and len(train) == 26
    assert len(split_heldout(items)[1]) == 3  # 10% by default
    # A small positive fraction still holds out one example.
    assert len(split_heldout(items[:3], 0.01)[1]) == 1
    assert split_heldout(items, size=0) == (items, [])


def test_split_refuses_to_leave_training_empty():
    with pytest.raises(CloError, match="too few examples"):
        split_heldout(["only"], 0.5)
    with pytest.raises(CloError, match="too few examples"):
        split_heldout(list(range(5)), size=5)
    with pytest.raises(CloError, match="fraction"):
        split_heldout(list(range(5)), 1.0)
    with pytest.raises(CloError, match="not both"):
        split_heldout(list(range(5)), 0.2, size=1)
