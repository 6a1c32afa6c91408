"""Language names, ISO 639 codes and aliases: what a user may type wherever a language is taken.

The model is prompted with the official English names (config.SUPPORTED_LANGUAGES); users
type "en", "eng", "zh", "yue", "Mandarin", "Farsi". `normalize_language` turns any of them
into the official name, and is the one place that does (CLI, Python API, folder runs,
streaming and the aligner all call it). `normalize_languages` also takes a set ("en,zh",
["en", "zh"]): the model then chooses each segment's language among those.
"""

from __future__ import annotations

from .model.config import SUPPORTED_LANGUAGES
from .errors import LanguageError
from .results import FINISH_NO_SPEECH, FINISH_SILENCE

# Official name -> (ISO 639-1, ISO 639-3, other names and codes). 639-1 has no code for
# Cantonese or Filipino; "yue" and "fil" are their 639-3 codes. Chinese is "zh"/"zho" (and
# 639-2/B "chi"); the official model writes Mandarin as Chinese.
LANGUAGE_CODES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "Chinese": ("zh", "zho", ("chi", "cmn", "mandarin", "zh-cn", "zh-hans", "zh-tw", "zh-hant", "putonghua")),
    "English": ("en", "eng", ("en-us", "en-gb")),
    "Cantonese": ("", "yue", ("zh-hk", "zh-yue")),
    "Arabic": ("ar", "ara", ()),
    "German": ("de", "deu", ("ger", "deutsch")),
    "French": ("fr", "fra", ("fre", "francais", "français")),
    "Spanish": ("es", "spa", ("castilian", "español", "espanol")),
    "Portuguese": ("pt", "por", ("pt-br", "pt-pt", "português")),
    "Indonesian": ("id", "ind", ("bahasa indonesia",)),
    "Italian": ("it", "ita", ("italiano",)),
    "Korean": ("ko", "kor", ()),
    "Russian": ("ru", "rus", ()),
    "Thai": ("th", "tha", ()),
    "Vietnamese": ("vi", "vie", ()),
    "Japanese": ("ja", "jpn", ()),
    "Turkish": ("tr", "tur", ()),
    "Hindi": ("hi", "hin", ()),
    "Malay": ("ms", "msa", ("may", "zsm", "bahasa melayu")),
    "Dutch": ("nl", "nld", ("dut", "flemish")),
    "Swedish": ("sv", "swe", ()),
    "Danish": ("da", "dan", ()),
    "Finnish": ("fi", "fin", ()),
    "Polish": ("pl", "pol", ()),
    "Czech": ("cs", "ces", ("cze",)),
    "Filipino": ("", "fil", ("tl", "tgl", "tagalog")),
    "Persian": ("fa", "fas", ("per", "farsi")),
    "Greek": ("el", "ell", ("gre",)),
    "Romanian": ("ro", "ron", ("rum", "moldavian")),
    "Hungarian": ("hu", "hun", ()),
    "Macedonian": ("mk", "mkd", ("mac",)),
}


def _key(text: str) -> str:
    return " ".join(str(text).strip().lower().replace("_", "-").split())


def _lookup_table() -> dict[str, str]:
    table = {}
    for name, (iso1, iso3, others) in LANGUAGE_CODES.items():
        for spelling in (name, iso1, iso3, *others):
            if spelling:
                table[_key(spelling)] = name
    return table


_LOOKUP = _lookup_table()


def normalize_language(language: str | None, supported=SUPPORTED_LANGUAGES) -> str | None:
    """'en', 'eng', 'english', 'EN-us', 'yue', 'farsi' -> the official name ('English', ...);
    None or '' stays None. Anything else, or a language the model does not support, raises
    LanguageError naming the options."""
    if language is None:
        return None
    if isinstance(language, (list, tuple)):
        raise LanguageError(f"one language is needed here, not a set: {', '.join(map(str, language))}")
    key = _key(language)
    if not key:
        return None
    name = _LOOKUP.get(key)
    if name is None:
        # A name of the model's own list not in the table (a future config) still works.
        name = next((s for s in supported if s.lower() == key), None)
    if name is None or name not in supported:
        raise LanguageError(f"unsupported language {language!r}; supported: {', '.join(supported)} "
                            "(or their ISO 639 codes: --list-languages)")
    return name


def normalize_languages(language, supported=SUPPORTED_LANGUAGES) -> str | tuple[str, ...] | None:
    """What a `language` option may be, checked: None (detect), one language (force it), or
    a set the model chooses from per segment: a list or tuple of languages, or a comma
    list ("en,zh"). A set's names come back in order, duplicates dropped, as a tuple; a set
    of one is that language, forced."""
    if isinstance(language, str) and "," in language:
        language = language.split(",")
    if not isinstance(language, (list, tuple)):
        if language is not None and not isinstance(language, str):
            raise LanguageError(f"language must be a name, a list of names or None, got {type(language).__name__}")
        return normalize_language(language, supported)
    names: list[str] = []
    for item in language:
        if not isinstance(item, str):
            raise LanguageError(f"language must be a name, a list of names or None, got {item!r} in the list")
        name = normalize_language(item, supported)
        if name is not None and name not in names:
            names.append(name)
    if not names:
        return None
    return names[0] if len(names) == 1 else tuple(names)


def forced_language(language) -> str | None:
    """The language to force from a normalized `language` option: None for detection and for a set."""
    return language if isinstance(language, str) else None


def language_set(language) -> tuple[str, ...]:
    """The languages a normalized `language` option lets the model choose from; () unless a set."""
    return language if isinstance(language, tuple) else ()


def codes(name: str) -> list[str]:
    """The ISO 639-1 and 639-3 codes of an official name, the ones that exist."""
    iso1, iso3, _ = LANGUAGE_CODES.get(name, ("", "", ()))
    return [code for code in (iso1, iso3) if code]


def language_table(supported=SUPPORTED_LANGUAGES) -> str:
    """The text `--list-languages` prints: one language a line, codes and aliases."""
    lines = [f"{'code':<6}{'639-3':<7}{'name':<12}also accepted"]
    for name in supported:
        iso1, iso3, others = LANGUAGE_CODES.get(name, ("", "", ()))
        lines.append(f"{iso1 or '-':<6}{iso3 or '-':<7}{name:<12}{', '.join(others)}".rstrip())
    return "\n".join(lines)


def forced_language_warning(name: str, result, language: str | None) -> str | None:
    """A warning when a forced `language` got no text out of audio that is not silent: the
    model found nothing it could write in that language (the speech is probably in another)."""
    language = forced_language(language)
    if not language or result.text.strip() or all(s.finish_reason in (FINISH_SILENCE, FINISH_NO_SPEECH) for s in result.segments):
        return None
    return (f"warning: {name}: nothing recognised with the language forced to {language}; "
            "if the speech is in another language, run without --language")
