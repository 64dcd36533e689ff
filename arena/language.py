"""The language of a prompt, as an ISO 639-1 code (``zh-Hant``/``zh-Hans`` for Chinese), offline.

Detection uses py3langid (a naive Bayes model over byte n-grams that ships inside its 4.6 MB wheel
and needs only numpy; ~0.1 ms per prompt). Two facts the model cannot see are settled by script:

* text with hiragana or katakana is Japanese (Chinese never uses kana), even when it is mostly kanji;
* Chinese is told apart as Traditional (``zh-Hant``, Taiwan, Hong Kong) or Simplified (``zh-Hans``)
  by counting characters that only one of the two scripts uses (tables below). When neither
  kind occurs (a short "你好"), the script is unknown and the code is plain ``zh``.

The model is loaded on first use (~0.6 s), never at import; :func:`preload` lets a server pay that
at start-up instead of on its first visitor's prompt.
"""

from __future__ import annotations

import threading
import unicodedata
from typing import Any

__all__ = ["MIN_CONFIDENCE", "MIN_LETTERS", "chinese_script", "detect_language", "preload"]

MIN_LETTERS = 2
"""Fewer letters than this (after dropping digits, punctuation, emoji) gives None."""

MIN_CONFIDENCE = 0.25
"""Below this normalised probability the guess is noise (e.g. "Hello" scores 0.06 for Breton) and None is returned."""

# Pairs of (Simplified form, Traditional form) of common characters where each form is used by one
# script only. Characters shared by both scripts in some meaning (后/後, 里/裡, 台/臺, 干, 于, 余,
# 几, 只, 面, 发/髮 ...) are deliberately left out: they would vote for the wrong script.
_PAIRS = (
    "们們这這个個为為说說时時会會来來国國学學对對过過还還发發问問关關经經开開没沒现現动動电電话話"
    "让讓应應该該实實点點长長样樣种種请請书書语語气氣东東车車门門见見认認识識机機体體头頭谁誰写寫"
    "听聽买買卖賣难難爱愛欢歡总總观觀题題给給吗嗎处處间間将將业業员員边邊变變华華历歷万萬产產亲親"
    "儿兒无無义義乐樂习習乡鄉乱亂争爭亚亞价價众眾优優传傳伤傷伟偉侦偵俭儉兰蘭兴興养養内內册冊军軍"
    "农農决決况況冻凍净淨凤鳳凭憑击擊则則刚剛创創删刪别別剧劇劝勸办辦务務劳勞势勢区區医醫单單卫衛"
    "厂廠厅廳压壓县縣参參双雙叙敘号號吓嚇启啟响響团團园園围圍图圖圆圓圣聖场場坏壞块塊坚堅报報声聲"
    "备備够夠夺奪奋奮奖獎妇婦妈媽孙孫宁寧宝寶审審导導寻尋尔爾尘塵尝嘗层層属屬岁歲岛島师師币幣带帶"
    "帮幫广廣庄莊庆慶库庫废廢张張弹彈强強归歸当當录錄忆憶态態怀懷恋戀恶惡悬懸惊驚惯慣戏戲战戰户戶"
    "扩擴扫掃扬揚抢搶护護担擔拥擁择擇损損换換据據摄攝摆擺旧舊显顯晓曉暂暫术術杀殺杂雜权權条條极極"
    "构構枪槍标標树樹桥橋检檢楼樓欧歐残殘毕畢汇匯汉漢汤湯沟溝泪淚泽澤洁潔浅淺测測济濟浓濃涨漲湾灣"
    "温溫满滿灭滅灯燈灵靈灾災炉爐热熱爷爺状狀独獨狮獅献獻环環画畫疗療盖蓋监監盘盤矿礦码碼础礎确確"
    "礼禮离離积積称稱稳穩穷窮竞競笔筆签簽简簡类類粮糧紧緊红紅约約级級纪紀纸紙线線练練组組细細织織"
    "终終结結绍紹络絡统統继繼续續维維绿綠编編网網罗羅职職联聯脑腦脚腳脸臉节節艺藝苏蘇药藥获獲营營"
    "补補装裝规規视視览覽觉覺计計讨討训訓记記讲講许許论論设設访訪证證评評诉訴词詞译譯试試诗詩询詢"
    "详詳误誤读讀调調谈談谢謝负負败敗货貨质質购購贵貴费費资資赛賽赶趕践踐转轉轮輪软軟轻輕载載较較"
    "辆輛输輸达達运運进進远遠违違连連迟遲适適选選递遞遗遺邮郵释釋针針钟鐘钱錢铁鐵银銀销銷锁鎖错錯"
    "键鍵闻聞阅閱队隊阳陽阴陰阶階际際陆陸险險随隨隐隱雾霧静靜韩韓页頁顶頂项項顺順须須顾顧预預领領"
    "频頻颜顏风風飞飛饭飯饮飲馆館马馬驾駕验驗骑騎鱼魚鸟鳥鸡雞麦麥黄黃龙龍齐齊鲁魯丽麗严嚴丰豐临臨"
    "举舉乌烏亏虧亿億仅僅伞傘伪偽"
)
_SIMPLIFIED_ONLY = frozenset(_PAIRS[0::2])
# Plus Traditional forms whose Simplified counterpart is shared with another word (so only this side tells).
_TRADITIONAL_ONLY = frozenset(_PAIRS[1::2]) | frozenset("後裡髮麵臺鬆")

# Written Cantonese uses these; without them a "yue" guess is just Chinese.
_CANTONESE = frozenset("嘅咗唔佢喺冇嘢啲噉咁啱嚟")

# The model's labels for Chinese varieties and a few non-ISO-639-1 labels folded into their language.
_CHINESE_LABELS = frozenset({"zh", "wuu", "yue"})
_FOLD = {"ary": "ar", "arz": "ar", "hbo": "he", "uzs": "uz", "nn": "no"}

_identifier: Any = None
_lock = threading.Lock()


def _model() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                _identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _identifier


def preload() -> None:
    """Load the model now (~0.6 s) rather than on the first call of :func:`detect_language`."""
    _model()


def chinese_script(text: str) -> str:
    """``"zh-Hant"`` or ``"zh-Hans"`` by majority of script-specific characters, else ``"zh"``."""
    simplified = sum(ch in _SIMPLIFIED_ONLY for ch in text)
    traditional = sum(ch in _TRADITIONAL_ONLY for ch in text)
    if traditional > simplified:
        return "zh-Hant"
    if simplified > traditional:
        return "zh-Hans"
    return "zh"


def _has_kana(text: str) -> bool:
    # Hiragana U+3040-309F, Katakana U+30A0-30FF (the prolonged sound mark ー included), halfwidth katakana.
    return any(("\u3041" <= ch <= "\u30ff" and ch != "\u30fb") or "\uff66" <= ch <= "\uff9d" for ch in text)


def detect_language(text: str) -> str | None:
    """The language of ``text``: ``"en"``, ``"pl"``, ``"ja"``, ``"zh-Hant"``, ``"zh-Hans"``, ...

    Returns None for empty or too-short text (fewer than ``MIN_LETTERS`` letters), for text with
    no language in it (code, numbers, emoji), and when the model is unsure (``MIN_CONFIDENCE``).
    Plain ``"zh"`` means Chinese in a script that cannot be told from the characters given.
    """
    if not text:
        return None
    # The first prompt is what is stored; a few kilobytes decide the language as well as the whole text.
    sample = unicodedata.normalize("NFC", text[:2000])
    letters = sum(ch.isalpha() for ch in sample)
    if letters < MIN_LETTERS:
        return None
    if _has_kana(sample):
        return "ja"
    label, confidence = _model().classify(sample)
    if label in _CHINESE_LABELS:
        if label == "yue" and any(ch in _CANTONESE for ch in sample):
            return "yue"
        return chinese_script(sample)
    if label in ("zxx", "und") or confidence < MIN_CONFIDENCE:
        return None
    return str(_FOLD.get(label, label))
