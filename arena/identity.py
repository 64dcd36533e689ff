"""Does an answer give away the model that wrote it? (identity leaks spoil an anonymous vote)

A vote is flagged only for what a reader would call the model giving itself away; a model's
alias used as an everyday word ("a light breeze", "Bielik to największy ptak drapieżny",
活字印刷术, 百川归海, シーサー, cirrus clouds) is not. Rules (documented in SECURITY.md, measured on
``tests/data/identity/corpus.jsonl`` by ``benchmarks/eval_identity.py``):

* Text and names are NFKC-normalised and case-folded (``BREEZE``, full-width ``Ｂｒｅｅｚｅ``).
  A name with Chinese or Japanese characters matches as a substring; any other name as a whole
  word (not touching a Latin letter or digit), with Polish case endings allowed ("Bielikiem").
* The names of a model are :attr:`arena.registry.ModelSpec.identity_names` (roster ``name``,
  ``aliases``, served ``model`` id with and without its organisation), plus each id cut after its
  size ("breeze-7b" from "Breeze-7B-Instruct-v1_0"). Names shorter than three characters (two for
  Chinese/Japanese) are ignored.
* **Model ids** (a name with a digit or a ``/``, or a name followed by a size or version such as
  "Bielik 7B", "Huozi 3.5") count anywhere in the answer.
* **Every other name** counts only in a self-naming context, in any of the five interface
  languages: "I am Breeze", "my name is", "I'm an AI assistant called Breeze", "I was trained by
  MediaTek Research", "As Bielik, I ...", "You are talking with Bielik", "Jestem Bielikiem",
  "Nazywam się", "stworzony przez SpeakLeash", "私はShisaです", "Shisaと申します", "我是活字",
  "我叫", "我由联发科开发"...
* What the visitor's own prompt brought in does not count: a model id that appears in the prompt,
  a self-naming phrase copied from the prompt, and names the prompt asked the model to play
  ("you are Bielik", "act as Breeze"). A question ("Are you Bielik?") is not such a request: a
  model that answers "Yes, I am Bielik" still gives itself away.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from arena.registry import ModelSpec

__all__ = ["IdentityMatcher", "identity_terms"]

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_WORD_CHAR = r"0-9a-z\u00c0-\u024f"
# Polish noun endings (genitive, dative, instrumental, locative, plural), longest first.
_POLISH_ENDINGS = ("ami", "ach", "owi", "iem", "ów", "em", "om", "ie", "a", "u", "y", "i", "e")
_MIN_LENGTH = 3
_MIN_CJK_LENGTH = 2  # one Han character is a common word; two already name something

# A sentence ends at . ! ? (not a decimal point, as in "v0.1") or a line break.
_REACH = 200  # characters of a sentence looked at on each side of a name (bounds the work per match)
_SENTENCE_END = re.compile(r"(?<!\d)\.(?!\d)|[!?。！？\n]")
# A size or version right after a name makes it a model id: "Bielik 7B", "Breeze-7B", "Huozi 3.5".
_SIZE_AFTER = re.compile(r"[-\s_]?(?:v?\d+(?:\.\d+)+|\d+(?:\.\d+)?\s?[bm])(?![0-9a-z])")

_FIRST_PERSON = (
    r"(?:\bi\b|\bi'm\b|\bi’m\b|\bme\b|\bmy\b|\bmyself\b|\bjestem\b|\bzostałe[mś]\b|\bzostałam\b|\bmnie\b|\bmój\b"
    r"|\bmoja\b|\bmoje\b|\bmoim\b|我|私|わたし|僕|ぼく|本模型|本助手)"
)
_SELF_NOUN = (
    r"(?:model\w*|assistant\w*|asystent\w*|chatbot\w*|\bai\b|\bllm\w*|bot\w*|sztuczn\w* inteligencj\w*"
    r"|モデル|アシスタント|ai|模型|助手|助理|人工智能|机器人|機器人)"
)
# Right before a name, these say "this name is me" (Latin scripts: English and Polish).
_DIRECT_LATIN = re.compile(
    r"(?:\bi am|\bi'm|\bi’m|\bmy name is|\bmy name's|\bcall me|\bi am called|\bi'm called|\bi go by"
    r"|\b(?:talking|speaking|chatting) (?:to|with)|\bjestem|\bnazywam się|\bmam na imię|\bmów mi|\bmówcie mi"
    r"|\brozmawiasz z|\bpiszesz z|\bz tej strony|\btu mówi)"
    r"\s+(?:the\s+|model\s+|modelem\s+|modelu\s+|asystentem\s+)?$"
)
_NAMING_LATIN = re.compile(
    r"(?:\bcalled|\bnamed|\bknown as|\bo nazwie|\bo imieniu|\bzwany|\bzwana|\bnazywany|\bnazywana)\s+$"
)
_MAKER_LATIN = re.compile(
    r"(?:trained|created|developed|built|made|designed|fine-?tuned|released|programmed|stworzon\w*|wytrenowan\w*"
    r"|opracowan\w*|zbudowan\w*|rozwijan\w*|przygotowan\w*|stworzył\w*|wytrenował\w*)\s+(?:by|przez)\s+"
    r"(?:the\s+)?(?:(?:team|researchers|engineers)\s+(?:at|of|from)\s+|zespół\s+|zespołu\s+)?$"
)
# A self-noun shortly before the name, in a sentence that began with "I am": "I am a Polish language
# model, Bielik"; "Jestem polskim modelem językowym Bielik".
_GAP_LATIN = re.compile(r"(?:\bi am|\bi'm|\bi’m|\bjestem)\b[^.!?]{0,60}?" + _SELF_NOUN + r"[\s,:]+(?:[^\s]+\s+){0,2}$")
_AS_LATIN = re.compile(r"(?:^|[\s,])(?:as|jako)\s+$")
_AS_AFTER = re.compile(r"^[,\s]+(?:i|i'm|i’m|i'd|i'll|my|mogę|jestem|moim|chcę|powiem)\b")
_MAKES_ME_AFTER = re.compile(
    r"^\s+(?:has\s+|have\s+)?(?:created|trained|built|developed|made|designed|fine-?tuned|stworzył\w*|wytrenował\w*"
    r"|opracował\w*|zbudował\w*)\s+(?:me|mnie)\b"
)
_CJK_AS = re.compile(r"(?:作为|作為)\s*$")
_CJK_AS_AFTER = re.compile(r"^\s*[，,、]?\s*(?:我|本模型)")
_HERE_AFTER = re.compile(r"^\s*(?:here\b|tutaj\b|z tej strony\b)")
_CJK_DIRECT = re.compile(
    r"(?:我是|我叫|我名叫|我的名字是|我的名字叫|叫我|本模型是|本助手是|我被称为|我被稱為|我就是|我乃"
    r"|私は|わたしは|僕は|ぼくは|私の名前は|わたしの名前は|こちらは)"
    r"(?:由|一个名叫|一個名叫|一个叫|一個叫|名为|名為)?\s*$"
)
# A Chinese/Japanese self-noun between "I am" and the name: 私は日本語のアシスタント、Shisaです.
_CJK_GAP = re.compile(r"(?:我是|私は|わたしは|僕は)[^。！？!?\n]{0,20}?" + _SELF_NOUN + r"[\s、，,：:]*$")
# What may follow a Chinese/Japanese name named in a self-introduction (so that 我是活字印刷术的爱好者
# and 私はシーサーが好きです are not taken for one).
_CJK_AFTER_OK = re.compile(
    r"^(?:$|[\s、，,。．.!！?？:：;；)）」』\"'0-9a-z\-]|です|でございます|だ|と申します|といいます|という|と呼"
    r"|の(?:ai|アシスタント|モデル|言語モデル)|模型|大模型|助手|助理|语言|語言|人工智能|ai|によって|により|が(?:開発|作)"
    r"|开发|開發|训练|訓練|研发|研發|打造|推出|创建|創建|设计|設計|团队|團隊|实验室|實驗室)"
)
_CJK_MAKER_BEFORE = re.compile(r"(?:由|被|是)\s*$")
_CJK_MAKER_AFTER = re.compile(
    r"^(?:的)?(?:团队|團隊|实验室|實驗室)?(?:开发|開發|训练|訓練|研发|研發|打造|推出|创建|創建|设计|設計|によって|により|が開発|が作)"
)
_CJK_CALLED_AFTER = re.compile(r"^(?:と申します|といいます|と呼んで|と言います)")
# A prompt that asks the model to be someone: "you are Bielik", "act as Breeze", "你是活字" (not a question).
_PERSONA = re.compile(
    r"(?:\byou are|\byou're|\bact as|\bpretend to be|\bplay|\bbe\b|\bjesteś|\budawaj|\bwciel się w"
    r"|あなたは|君は|として|你是|妳是|扮演|假装是|假裝是)"
)
_QUESTION = re.compile(r"[?？]|吗|嗎|\bczy\b|ですか|か$")


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _id_stem(model_id: str) -> str | None:
    """ "breeze-7b" from "breeze-7b-instruct-v1_0": the id cut after its first part with a digit."""
    parts = model_id.split("-")
    for i, part in enumerate(parts):
        if any(ch.isdigit() for ch in part):
            return "-".join(parts[: i + 1]) if i > 0 else None
    return None


def identity_terms(spec: ModelSpec) -> tuple[str, ...]:
    """Every name that gives ``spec`` away, normalised, longest first."""
    names = list(spec.identity_names)
    names += [stem for n in spec.identity_names if (stem := _id_stem(_norm(n).rsplit("/", 1)[-1]))]
    terms = {_norm(n).strip() for n in names}
    kept = (t for t in terms if len(t) >= (_MIN_CJK_LENGTH if _CJK.search(t) else _MIN_LENGTH))
    return tuple(sorted(kept, key=lambda t: (-len(t), t)))


def _is_model_id(term: str) -> bool:
    return "/" in term or any(ch.isdigit() for ch in term)


def _term_pattern(term: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(word) for word in term.split())
    if _CJK.search(term):
        return re.compile(body)
    endings = "|".join(_POLISH_ENDINGS)
    return re.compile(rf"(?<![{_WORD_CHAR}]){body}(?:{endings})?(?![{_WORD_CHAR}])")


@dataclass(frozen=True)
class _Term:
    text: str
    pattern: re.Pattern[str]
    model_id: bool
    cjk: bool


def _sentence(text: str, start: int, end: int) -> tuple[str, str]:
    """The part of the sentence around ``text[start:end]`` before it and after it (at most _REACH each)."""
    begin = max(0, start - _REACH)
    for m in _SENTENCE_END.finditer(text, begin, start):
        begin = m.end()
    stop = _SENTENCE_END.search(text, end, end + _REACH)
    return text[begin:start], text[end : stop.start() if stop else min(len(text), end + _REACH)]


def _self_naming(term: _Term, before: str, after: str) -> bool:
    """Is this occurrence of a name the model naming itself (judged from its sentence)?"""
    if term.cjk or _CJK.search(before[-3:] or " "):
        if _CJK_CALLED_AFTER.match(after):
            return True
        if (_CJK_DIRECT.search(before) or _CJK_GAP.search(before)) and _CJK_AFTER_OK.match(after):
            return True
        if _CJK_MAKER_BEFORE.search(before) and _CJK_MAKER_AFTER.match(after) and re.search(_FIRST_PERSON, before):
            return True
        if re.search(_FIRST_PERSON, before) and _CJK_MAKER_AFTER.match(after) and term.cjk:
            return True  # 我由联发科开发, 私はAUGMXNTによって開発されました
    if _DIRECT_LATIN.search(before):
        return True
    if _NAMING_LATIN.search(before) and re.search(_FIRST_PERSON, before):
        return True
    maker = _MAKER_LATIN.search(before)
    if maker and (re.search(_FIRST_PERSON, before + after) or not before[: maker.start()].strip()):
        return True  # "I was trained by X", "As an AI developed by X, I ...", "Trained by X."
    if _GAP_LATIN.search(before):
        return True
    if _AS_LATIN.search(before) and _AS_AFTER.match(after):
        return True
    if _CJK_AS.search(before) and _CJK_AS_AFTER.match(after):
        return True  # 作为活字，我...
    if not before.strip(" \t,\"'“”„«»*") and _HERE_AFTER.match(after):
        return True  # "Aurora here!"
    return bool(_MAKES_ME_AFTER.match(after))


def _asked_to_play(term: _Term, prompt: str) -> bool:
    """Does the prompt name ``term`` in a request to play it, or introduce itself with it?"""
    for m in term.pattern.finditer(prompt):
        before, after = _sentence(prompt, m.start(), m.end())
        if _self_naming(term, before, after):
            return True
        if _PERSONA.search(before) and not _QUESTION.search(before + after):
            return True
    return False


class IdentityMatcher:
    """Finds a model giving itself away in text; built once from the roster."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._terms: dict[str, tuple[_Term, ...]] = {
            s.name: tuple(_Term(t, _term_pattern(t), _is_model_id(t), bool(_CJK.search(t))) for t in identity_terms(s))
            for s in specs
        }

    def leak(self, model: str, text: str, prompt: str = "") -> str | None:
        """The evidence (a short piece of ``text``) that ``model`` named itself, or ``None``.

        ``prompt`` is everything the visitor wrote in the battle: what it brought in does not count.
        """
        terms = self._terms.get(model, ())
        if not terms:
            return None
        said, asked = _norm(text), _norm(prompt)
        for term in terms:
            if not term.pattern.search(said):
                continue
            played = _asked_to_play(term, asked) if asked else False
            for m in term.pattern.finditer(said):
                before, after = _sentence(said, m.start(), m.end())
                size = _SIZE_AFTER.match(after)
                if term.model_id or size:
                    shown = m.group(0) + (size.group(0) if size else "")
                    if shown not in asked and m.group(0) not in asked:
                        return shown
                    continue
                if played or not _self_naming(term, before, after):
                    continue
                phrase = (before[-24:] + m.group(0)).strip()
                if asked and phrase in asked:
                    continue  # a self-introduction copied from the prompt
                return phrase
        return None

    def names_itself(self, model: str, text: str, prompt: str = "") -> bool:
        """True when ``text`` gives ``model`` away (unknown models never match); see :meth:`leak`."""
        return self.leak(model, text, prompt) is not None
