"""The language registry: lookups, error messages, and codes checked against the real tools."""

import json

import lingua
import pytest
from transformers.models.m2m_100.tokenization_m2m_100 import FAIRSEQ_LANGUAGE_CODES as M2M_CODES
from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES as NLLB_CODES

from clo.errors import CloError
from clo.languages import (
    PAPER_LANGUAGES,
    UnknownLanguageError,
    all_languages,
    get_language,
    lingua_language,
    recommended_trainable,
    resource_level,
    trainable_recommendation,
)


@pytest.mark.parametrize(
    "query, code",
    [
        ("sw", "sw"),
        ("SW", "sw"),
        (" de ", "de"),
        ("swh_Latn", "sw"),
        ("SWH_LATN", "sw"),
        ("swh-Latn", "sw"),
        ("zho_Hans", "zh"),
        ("Swahili", "sw"),
        ("yoruba", "yo"),
        ("GERMAN", "de"),
        ("ns", "nso"),  # M2M100's own code for Northern Sotho
        ("nso", "nso"),
        ("Farsi", "fa"),  # alias
        ("ceb", "ceb"),
    ],
)
def test_lookup_accepts_codes_nllb_codes_and_names(query, code):
    assert get_language(query).code == code


def test_unknown_language_lists_close_matches():
    with pytest.raises(UnknownLanguageError) as info:
        get_language("swahilli")
    message = str(info.value)
    assert "swahilli" in message
    assert "sw (Swahili)" in message
    # It is both a CloError (user-fixable) and a ValueError (for generic callers).
    assert isinstance(info.value, CloError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", ["", "   ", "xx_Yyyy", None, 42])
def test_unknown_or_invalid_input_raises(bad):
    with pytest.raises(UnknownLanguageError):
        get_language(bad)


def test_paper_languages_have_the_published_codes():
    expected = {
        "zh": ("Chinese", "Hans", "zh", "zho_Hans", "CHINESE", "high"),
        "de": ("German", "Latn", "de", "deu_Latn", "GERMAN", "high"),
        "ko": ("Korean", "Hang", "ko", "kor_Hang", "KOREAN", "medium"),
        "id": ("Indonesian", "Latn", "id", "ind_Latn", "INDONESIAN", "medium"),
        "sw": ("Swahili", "Latn", "sw", "swh_Latn", "SWAHILI", "low"),
        "yo": ("Yoruba", "Latn", "yo", "yor_Latn", "YORUBA", "low"),
    }
    assert set(PAPER_LANGUAGES) == set(expected)
    for code, (name, script, m2m, nllb, lingua_name, level) in expected.items():
        lang = get_language(code)
        assert (lang.name, lang.script, lang.m2m100_code, lang.nllb_code) == (
            name,
            script,
            m2m,
            nllb,
        )
        assert lang.lingua_name == lingua_name
        assert lang.resource == level


def test_every_m2m100_language_is_registered_once():
    m2m = [lang.m2m100_code for lang in all_languages()]
    assert sorted(m2m) == sorted(M2M_CODES["m2m100"])
    codes = [lang.code for lang in all_languages()]
    assert len(set(codes)) == len(codes) == 100
    for m2m_code in M2M_CODES["m2m100"]:
        assert get_language(m2m_code).m2m100_code == m2m_code


def test_nllb_codes_exist_in_the_nllb_tokenizer():
    for lang in all_languages():
        if lang.nllb_code is not None:
            assert lang.nllb_code in NLLB_CODES, lang
            assert lang.nllb_code.endswith("_" + lang.script)
    missing = {lang.code for lang in all_languages() if lang.nllb_code is None}
    assert missing == {"br", "fy"}  # Breton and Western Frisian are not in NLLB-200


def test_lingua_names_are_real_members_for_the_right_language():
    for lang in all_languages():
        member = lingua_language(lang.code)
        if lang.lingua_name is None:
            assert member is None
            continue
        assert isinstance(member, lingua.Language)
        iso1 = member.iso_code_639_1.name.lower()
        # lingua calls Norwegian Bokmal "nb"; the registry uses M2M100's "no".
        assert iso1 == {"no": "nb"}.get(lang.code, lang.code), lang


def test_trainable_recommendation_follows_the_paper():
    assert recommended_trainable("sw") == "full"
    assert recommended_trainable("Yoruba") == "full"
    for code in ("zh", "de", "ko", "id"):
        assert recommended_trainable(code) == "attention"
    choice, reason = trainable_recommendation("sw")
    assert choice == "full" and "Swahili" in reason and "low-resource" in reason
    assert resource_level("ko") == "medium"
    assert {lang.resource for lang in all_languages()} == {"high", "medium", "low"}


def test_cli_lists_languages_as_json():
    from typer.testing import CliRunner

    from clo.cli import app

    result = CliRunner().invoke(app, ["languages", "--paper", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["code"]: row for row in json.loads(result.output)}
    assert set(rows) == set(PAPER_LANGUAGES)
    assert rows["sw"]["nllb_code"] == "swh_Latn"
    assert rows["sw"]["recommended_trainable"] == "full"


def test_cli_validate_seed_reports_bad_lines(tmp_path):
    from typer.testing import CliRunner

    from clo.cli import app

    path = tmp_path / "seed.jsonl"
    path.write_text('{"prompt": "p", "response": "r"}\n{"prompt": 1}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["validate-seed", str(path)])
    assert result.exit_code == 1
    assert "line 2, field 'prompt'" in result.output
    assert "1 valid example(s), 1 invalid line(s)" in result.output


@pytest.mark.parametrize(
    "query, code",
    [
        ("ko-KR", "ko"),  # once "Did you mean km (Khmer)?"
        ("swh", "sw"),  # ISO 639-3 individual language of the sw macrolanguage
        ("kor", "ko"),  # ISO 639-2
        ("yor", "yo"),
        ("pt-BR", "pt"),
        ("zh-Hant", "zh"),
        ("zh-Hans", "zh"),
        ("cmn", "zh"),
        ("deu", "de"),
        ("ger", "de"),  # ISO 639-2/B
        ("sw_KE", "sw"),
        ("nb", "no"),
        ("fil", "tl"),
        ("iw", "he"),  # deprecated tag
    ],
)
def test_language_tags_users_type_resolve(query, code):
    assert get_language(query).code == code


def test_dropped_parts_of_a_tag_are_said():
    from clo.languages import match_language

    assert match_language("swh").note is None and match_language("zh-Hans").note is None
    assert "region BR" in (match_language("pt-BR").note or "")
    note = match_language("zh-Hant").note or ""
    assert "Hant" in note and "Hans" in note  # what was asked and what is trained


@pytest.mark.parametrize("bad", ["yue", "qq-KR", "und"])
def test_tags_the_registry_cannot_serve_are_refused(bad):
    with pytest.raises(UnknownLanguageError):
        get_language(bad)
