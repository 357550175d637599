"""Registry of the languages CLO can target: codes for M2M100, NLLB-200 and lingua.

Every one of M2M100's 100 languages is listed. `code` is ISO 639-1 where one exists and
ISO 639-3 otherwise (Asturian `ast`, Cebuano `ceb`, Iloko `ilo`, Northern Sotho `nso`,
which M2M100 itself calls `ns`). `nllb_code` is the FLORES-200 code NLLB-200 uses, or None
for the two M2M100 languages NLLB lacks (Breton, Western Frisian).

Lookups take what users type: codes and names from the table, and any BCP 47 tag or
ISO 639-2/3 code, parsed by `langcodes` (`ko-KR`, `kor`, `swh`, `pt-BR`, `zh-Hant`). A tag
whose region, script or variant the registry cannot represent resolves to the registered
language and `match_language` says what was dropped.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import langcodes
from langcodes.data_dicts import NORMALIZED_MACROLANGUAGES

from clo.errors import CloError

if TYPE_CHECKING:  # lingua is imported lazily: it loads large models on first use
    import lingua

logger = logging.getLogger(__name__)

ResourceLevel = Literal["high", "medium", "low"]
Trainable = Literal["attention", "full"]

# The paper's six target languages: two high, two medium, two low resource (METHOD.md).
PAPER_LANGUAGES: tuple[str, ...] = ("zh", "de", "ko", "id", "sw", "yo")


class UnknownLanguageError(CloError, ValueError):
    """A language code or name that the registry does not know."""


@dataclass(frozen=True)
class Language:
    """One target language and its code in every tool the pipeline uses."""

    code: str
    name: str
    script: str  # ISO 15924
    m2m100_code: str
    nllb_code: str | None
    lingua_name: str | None  # member name of lingua.Language, None if lingua lacks it
    resource: ResourceLevel


# code, English name, script, M2M100 code, NLLB code, lingua name, resource level.
# Resource levels follow METHOD.md for the paper's languages (zh/de high, ko/id medium,
# sw/yo low); for the rest they are our judgement of how much web text and instruction
# data exists for the language.
_TABLE: tuple[tuple[str, str, str, str, str | None, str | None, ResourceLevel], ...] = (
    ("af", "Afrikaans", "Latn", "af", "afr_Latn", "AFRIKAANS", "medium"),
    ("am", "Amharic", "Ethi", "am", "amh_Ethi", None, "low"),
    ("ar", "Arabic", "Arab", "ar", "arb_Arab", "ARABIC", "high"),
    ("ast", "Asturian", "Latn", "ast", "ast_Latn", None, "low"),
    ("az", "Azerbaijani", "Latn", "az", "azj_Latn", "AZERBAIJANI", "medium"),
    ("ba", "Bashkir", "Cyrl", "ba", "bak_Cyrl", None, "low"),
    ("be", "Belarusian", "Cyrl", "be", "bel_Cyrl", "BELARUSIAN", "medium"),
    ("bg", "Bulgarian", "Cyrl", "bg", "bul_Cyrl", "BULGARIAN", "medium"),
    ("bn", "Bengali", "Beng", "bn", "ben_Beng", "BENGALI", "medium"),
    ("br", "Breton", "Latn", "br", None, None, "low"),
    ("bs", "Bosnian", "Latn", "bs", "bos_Latn", "BOSNIAN", "medium"),
    ("ca", "Catalan", "Latn", "ca", "cat_Latn", "CATALAN", "medium"),
    ("ceb", "Cebuano", "Latn", "ceb", "ceb_Latn", None, "low"),
    ("cs", "Czech", "Latn", "cs", "ces_Latn", "CZECH", "high"),
    ("cy", "Welsh", "Latn", "cy", "cym_Latn", "WELSH", "low"),
    ("da", "Danish", "Latn", "da", "dan_Latn", "DANISH", "medium"),
    ("de", "German", "Latn", "de", "deu_Latn", "GERMAN", "high"),
    ("el", "Greek", "Grek", "el", "ell_Grek", "GREEK", "medium"),
    ("en", "English", "Latn", "en", "eng_Latn", "ENGLISH", "high"),
    ("es", "Spanish", "Latn", "es", "spa_Latn", "SPANISH", "high"),
    ("et", "Estonian", "Latn", "et", "est_Latn", "ESTONIAN", "medium"),
    ("fa", "Persian", "Arab", "fa", "pes_Arab", "PERSIAN", "medium"),
    ("ff", "Fulah", "Latn", "ff", "fuv_Latn", None, "low"),
    ("fi", "Finnish", "Latn", "fi", "fin_Latn", "FINNISH", "medium"),
    ("fr", "French", "Latn", "fr", "fra_Latn", "FRENCH", "high"),
    ("fy", "Western Frisian", "Latn", "fy", None, None, "low"),
    ("ga", "Irish", "Latn", "ga", "gle_Latn", "IRISH", "low"),
    ("gd", "Scottish Gaelic", "Latn", "gd", "gla_Latn", None, "low"),
    ("gl", "Galician", "Latn", "gl", "glg_Latn", None, "medium"),
    ("gu", "Gujarati", "Gujr", "gu", "guj_Gujr", "GUJARATI", "low"),
    ("ha", "Hausa", "Latn", "ha", "hau_Latn", None, "low"),
    ("he", "Hebrew", "Hebr", "he", "heb_Hebr", "HEBREW", "medium"),
    ("hi", "Hindi", "Deva", "hi", "hin_Deva", "HINDI", "medium"),
    ("hr", "Croatian", "Latn", "hr", "hrv_Latn", "CROATIAN", "medium"),
    ("ht", "Haitian Creole", "Latn", "ht", "hat_Latn", None, "low"),
    ("hu", "Hungarian", "Latn", "hu", "hun_Latn", "HUNGARIAN", "medium"),
    ("hy", "Armenian", "Armn", "hy", "hye_Armn", "ARMENIAN", "low"),
    ("id", "Indonesian", "Latn", "id", "ind_Latn", "INDONESIAN", "medium"),
    ("ig", "Igbo", "Latn", "ig", "ibo_Latn", None, "low"),
    ("ilo", "Iloko", "Latn", "ilo", "ilo_Latn", None, "low"),
    ("is", "Icelandic", "Latn", "is", "isl_Latn", "ICELANDIC", "low"),
    ("it", "Italian", "Latn", "it", "ita_Latn", "ITALIAN", "high"),
    ("ja", "Japanese", "Jpan", "ja", "jpn_Jpan", "JAPANESE", "high"),
    ("jv", "Javanese", "Latn", "jv", "jav_Latn", None, "low"),
    ("ka", "Georgian", "Geor", "ka", "kat_Geor", "GEORGIAN", "low"),
    ("kk", "Kazakh", "Cyrl", "kk", "kaz_Cyrl", "KAZAKH", "low"),
    ("km", "Khmer", "Khmr", "km", "khm_Khmr", None, "low"),
    ("kn", "Kannada", "Knda", "kn", "kan_Knda", None, "low"),
    ("ko", "Korean", "Hang", "ko", "kor_Hang", "KOREAN", "medium"),
    ("lb", "Luxembourgish", "Latn", "lb", "ltz_Latn", None, "low"),
    ("lg", "Ganda", "Latn", "lg", "lug_Latn", "GANDA", "low"),
    ("ln", "Lingala", "Latn", "ln", "lin_Latn", None, "low"),
    ("lo", "Lao", "Laoo", "lo", "lao_Laoo", None, "low"),
    ("lt", "Lithuanian", "Latn", "lt", "lit_Latn", "LITHUANIAN", "medium"),
    ("lv", "Latvian", "Latn", "lv", "lvs_Latn", "LATVIAN", "medium"),
    ("mg", "Malagasy", "Latn", "mg", "plt_Latn", None, "low"),
    ("mk", "Macedonian", "Cyrl", "mk", "mkd_Cyrl", "MACEDONIAN", "low"),
    ("ml", "Malayalam", "Mlym", "ml", "mal_Mlym", None, "low"),
    ("mn", "Mongolian", "Cyrl", "mn", "khk_Cyrl", "MONGOLIAN", "low"),
    ("mr", "Marathi", "Deva", "mr", "mar_Deva", "MARATHI", "low"),
    ("ms", "Malay", "Latn", "ms", "zsm_Latn", "MALAY", "medium"),
    ("my", "Burmese", "Mymr", "my", "mya_Mymr", None, "low"),
    ("ne", "Nepali", "Deva", "ne", "npi_Deva", None, "low"),
    ("nl", "Dutch", "Latn", "nl", "nld_Latn", "DUTCH", "high"),
    ("no", "Norwegian", "Latn", "no", "nob_Latn", "BOKMAL", "medium"),
    ("nso", "Northern Sotho", "Latn", "ns", "nso_Latn", None, "low"),
    ("oc", "Occitan", "Latn", "oc", "oci_Latn", None, "low"),
    ("or", "Oriya", "Orya", "or", "ory_Orya", None, "low"),
    ("pa", "Punjabi", "Guru", "pa", "pan_Guru", "PUNJABI", "low"),
    ("pl", "Polish", "Latn", "pl", "pol_Latn", "POLISH", "high"),
    ("ps", "Pashto", "Arab", "ps", "pbt_Arab", None, "low"),
    ("pt", "Portuguese", "Latn", "pt", "por_Latn", "PORTUGUESE", "high"),
    ("ro", "Romanian", "Latn", "ro", "ron_Latn", "ROMANIAN", "medium"),
    ("ru", "Russian", "Cyrl", "ru", "rus_Cyrl", "RUSSIAN", "high"),
    ("sd", "Sindhi", "Arab", "sd", "snd_Arab", None, "low"),
    ("si", "Sinhala", "Sinh", "si", "sin_Sinh", None, "low"),
    ("sk", "Slovak", "Latn", "sk", "slk_Latn", "SLOVAK", "medium"),
    ("sl", "Slovenian", "Latn", "sl", "slv_Latn", "SLOVENE", "medium"),
    ("so", "Somali", "Latn", "so", "som_Latn", "SOMALI", "low"),
    ("sq", "Albanian", "Latn", "sq", "als_Latn", "ALBANIAN", "low"),
    ("sr", "Serbian", "Cyrl", "sr", "srp_Cyrl", "SERBIAN", "medium"),
    ("ss", "Swati", "Latn", "ss", "ssw_Latn", None, "low"),
    ("su", "Sundanese", "Latn", "su", "sun_Latn", None, "low"),
    ("sv", "Swedish", "Latn", "sv", "swe_Latn", "SWEDISH", "high"),
    ("sw", "Swahili", "Latn", "sw", "swh_Latn", "SWAHILI", "low"),
    ("ta", "Tamil", "Taml", "ta", "tam_Taml", "TAMIL", "medium"),
    ("th", "Thai", "Thai", "th", "tha_Thai", "THAI", "medium"),
    ("tl", "Tagalog", "Latn", "tl", "tgl_Latn", "TAGALOG", "medium"),
    ("tn", "Tswana", "Latn", "tn", "tsn_Latn", "TSWANA", "low"),
    ("tr", "Turkish", "Latn", "tr", "tur_Latn", "TURKISH", "medium"),
    ("uk", "Ukrainian", "Cyrl", "uk", "ukr_Cyrl", "UKRAINIAN", "medium"),
    ("ur", "Urdu", "Arab", "ur", "urd_Arab", "URDU", "medium"),
    ("uz", "Uzbek", "Latn", "uz", "uzn_Latn", None, "low"),
    ("vi", "Vietnamese", "Latn", "vi", "vie_Latn", "VIETNAMESE", "medium"),
    ("wo", "Wolof", "Latn", "wo", "wol_Latn", None, "low"),
    ("xh", "Xhosa", "Latn", "xh", "xho_Latn", "XHOSA", "low"),
    ("yi", "Yiddish", "Hebr", "yi", "ydd_Hebr", None, "low"),
    ("yo", "Yoruba", "Latn", "yo", "yor_Latn", "YORUBA", "low"),
    ("zh", "Chinese", "Hans", "zh", "zho_Hans", "CHINESE", "high"),
    ("zu", "Zulu", "Latn", "zu", "zul_Latn", "ZULU", "low"),
)

# Other names users type for the same language (lower case).
_ALIASES: dict[str, str] = {
    "farsi": "fa",
    "myanmar": "my",
    "panjabi": "pa",
    "slovene": "sl",
    "bokmal": "no",
    "norwegian bokmal": "no",
    "haitian": "ht",
    "gaelic": "gd",
    "frisian": "fy",
    "filipino": "tl",
    "ilocano": "ilo",
    "luganda": "lg",
    "sepedi": "nso",
    "pushto": "ps",
    "sinhalese": "si",
    "setswana": "tn",
    "siswati": "ss",
    "flemish": "nl",
    "mandarin": "zh",
    "chinese (simplified)": "zh",
    "khmer": "km",
    "central khmer": "km",
    "fula": "ff",
    "fulfulde": "ff",
    "kiswahili": "sw",
    "bahasa indonesia": "id",
    "castilian": "es",
    "valencian": "ca",
    "moldavian": "ro",
}

_LANGUAGES: tuple[Language, ...] = tuple(Language(*row) for row in _TABLE)


def _build_index() -> dict[str, Language]:
    """Map every accepted spelling (code, M2M100 code, NLLB code, name, alias) to its language."""
    index: dict[str, Language] = {}
    for lang in _LANGUAGES:
        keys = [lang.code, lang.m2m100_code, lang.name]
        if lang.nllb_code:
            keys.append(lang.nllb_code)
        for key in keys:
            index.setdefault(key.lower(), lang)
    by_code = {lang.code: lang for lang in _LANGUAGES}
    for alias, code in _ALIASES.items():
        index.setdefault(alias, by_code[code])
    return index


_INDEX = _build_index()


def all_languages() -> tuple[Language, ...]:
    """Every registered language, ordered by code."""
    return _LANGUAGES


@dataclass(frozen=True)
class LanguageMatch:
    """What a typed language resolved to, and what of it the registry cannot represent."""

    language: Language
    requested: str
    note: str | None = None  # e.g. "script Hant is not available ..."; None: exact


# ISO 639-3 codes of the table's NLLB codes (swh, pes, zsm, ...): individual languages the
# registry holds under their macrolanguage's code.
_BY_ISO3: dict[str, Language] = {
    lang.nllb_code.split("_")[0]: lang for lang in _LANGUAGES if lang.nllb_code
}
_BY_CODE: dict[str, Language] = {lang.code: lang for lang in _LANGUAGES}
# Subtags langcodes keeps apart that the registry holds under another code.
_SAME_AS: dict[str, str] = {"fil": "tl", "nb": "no"}


def get_language(code: str) -> Language:
    """Look up a language by code, BCP 47 tag, ISO 639-2/3 or NLLB code, or English name."""
    return match_language(code).language


def match_language(code: str) -> LanguageMatch:
    """Resolve what a user typed; `note` says what of a tag (region, script) was dropped."""
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError(f"language must be a non-empty string, got {code!r}")
    typed = code.strip()
    key = typed.lower().replace("-", "_")
    found = _INDEX.get(key) or _INDEX.get(typed.lower())
    if found is not None:
        return LanguageMatch(found, typed)
    tag = _parse_tag(typed)
    if tag is not None and tag.language:
        found = _registered(tag.language)
        if found is not None:
            return LanguageMatch(found, typed, _dropped(tag, found))
    # Suggest from the base subtag too, so "xx-KR" style input still gets close matches.
    base = tag.language if tag is not None and tag.language else key
    matches = difflib.get_close_matches(base, list(_INDEX), n=5, cutoff=0.6)
    suggestions = sorted({f"{_INDEX[m].code} ({_INDEX[m].name})" for m in matches})
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    raise UnknownLanguageError(
        f"unknown language {code!r}.{hint} Use a language tag or ISO 639 code (e.g. 'sw', "
        "'swh', 'pt-BR'), an NLLB code (e.g. 'swh_Latn') or an English name (e.g. "
        "'Swahili'); `clo languages` lists all."
    )


def _parse_tag(text: str) -> langcodes.Language | None:
    """`text` as a BCP 47 tag (deprecated and ISO 639-2/3 codes normalised), or None."""
    try:
        return langcodes.Language.get(text.replace("_", "-"))
    except (ValueError, LookupError):  # LanguageTagError is a ValueError
        return None


def _registered(subtag: str) -> Language | None:
    """The registry's language for a primary language subtag, directly or through the
    macrolanguage it is the main member of (swh -> sw, cmn -> zh, arb -> ar)."""
    for candidate in (subtag, _SAME_AS.get(subtag), NORMALIZED_MACROLANGUAGES.get(subtag)):
        if candidate is None:
            continue
        found = _BY_CODE.get(candidate) or _BY_ISO3.get(candidate)
        if found is not None:
            return found
    return None


def _dropped(tag: langcodes.Language, lang: Language) -> str | None:
    """What of `tag` the registry does not represent, for the user to see; None: nothing."""
    parts: list[str] = []
    if tag.script and tag.script != lang.script:
        tools = f"M2M100 {lang.m2m100_code}" + (
            f", NLLB {lang.nllb_code}" if lang.nllb_code else ""
        )
        parts.append(
            f"script {tag.script} is not available: {lang.name} is registered in "
            f"{lang.script} only ({tools})"
        )
    if tag.territory:
        parts.append(f"region {tag.territory} is not distinguished")
    if tag.variants:
        parts.append(f"variant {'-'.join(tag.variants)} is not distinguished")
    if not parts:
        return None
    return f"{'; '.join(parts)}; using {lang.code} ({lang.name}, {lang.script})"


def resource_level(code: str) -> ResourceLevel:
    """How much training text exists for the language: "high", "medium" or "low"."""
    return get_language(code).resource


def trainable_recommendation(code: str) -> tuple[Trainable, str]:
    """Which parameters to train for this language, and why (METHOD.md, "What is trained")."""
    lang = get_language(code)
    if lang.resource == "low":
        return (
            "full",
            f"{lang.name} is a low-resource language: the paper finds attention-only CLO "
            "fails there (Swahili 29.7% vs 69.6% win rate with full fine-tuning).",
        )
    return (
        "attention",
        f"{lang.name} is a {lang.resource}-resource language: training only the attention "
        "projections matches full fine-tuning in the paper at about 30% less memory than DPO.",
    )


def recommended_trainable(code: str) -> Trainable:
    """Return "attention" for high/medium-resource languages, "full" for low-resource ones."""
    return trainable_recommendation(code)[0]


def lingua_language(code: str) -> lingua.Language | None:
    """The lingua-language-detector enum member for the language, or None if lingua lacks it."""
    lang = get_language(code)
    if lang.lingua_name is None:
        return None
    import lingua

    member: lingua.Language = getattr(lingua.Language, lang.lingua_name)
    return member
