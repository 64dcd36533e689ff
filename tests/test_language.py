"""Prompt language detection: ISO 639-1 codes, Traditional vs Simplified Chinese, None when unsure."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from arena.language import chinese_script, detect_language


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("Opowiedz mi krótko o Krakowie.", "pl"),
        ("Dzień dobry, jak się masz?", "pl"),
        ("What is the capital of France, and why is it there?", "en"),
        ("東京の天気はどうですか？", "ja"),
        ("東京大学について教えて", "ja"),  # mostly kanji, but kana make it Japanese
        ("請告訴我們這個問題的答案", "zh-Hant"),
        ("我想去台北看看朋友，你覺得怎麼樣？", "zh-Hant"),
        ("请告诉我们这个问题的答案", "zh-Hans"),
        ("我想去北京看看朋友，你觉得怎么样？", "zh-Hans"),
        ("Привет, как у тебя сегодня дела?", "ru"),
        ("Bonjour tout le monde, comment allez-vous ?", "fr"),
        ("שלום, מה שלומך היום?", "he"),
    ],
)
def test_languages(text: str, code: str) -> None:
    assert detect_language(text) == code


@pytest.mark.parametrize("text", ["", "   ", "a", "hi", "12345 678", "🙂🙂🙂", "?!", "def f(x): return x+1"])
def test_too_short_or_no_language_is_none(text: str) -> None:
    assert detect_language(text) is None


def test_chinese_script_counts_script_specific_characters() -> None:
    assert chinese_script("這是繁體中文") == "zh-Hant"
    assert chinese_script("这是简体中文") == "zh-Hans"
    # 你好 is written the same in both scripts.
    assert chinese_script("你好") == "zh"
    assert detect_language("你好") == "zh"


def test_fast_after_first_use() -> None:
    detect_language("warm up the model")
    texts = ["Opowiedz mi krótko o Krakowie.", "請告訴我們這個問題的答案", "What is the capital of France?"] * 100
    start = time.perf_counter()
    for t in texts:
        detect_language(t)
    assert (time.perf_counter() - start) / len(texts) < 0.005


def test_import_loads_no_model() -> None:
    code = "import sys, arena.language; print('py3langid' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
