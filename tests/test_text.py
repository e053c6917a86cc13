import unicodedata

import pytest

from polyglot_lion.data.text import normalize_text, strip_qwen_prefix


@pytest.mark.parametrize("raw, expected", [
    ("Hello, World!", "hello world"),
    ("Don't STOP -- the  well-known  \"rule\".", "dont stop the wellknown rule"),
    ("It costs $5 + 10%", "it costs 5 10"),  # $ and + are symbols -> spaces; % is punctuation -> deleted
    ("Line one\nline\ttwo", "line one line two"),
])
def test_english(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("而 对 楼市 成交 抑制 作用 最 大 的 限购", "而对楼市成交抑制作用最大的限购"),  # AISHELL word spaces
    ("你好，世界！", "你好世界"),
    ("ＡＢＣ１２３　你好", "abc123 你好"),  # full-width letters/digits/space -> half-width
    ("我有３个ｉＰｈｏｎｅ。", "我有3个iphone"),
    ("《新加坡》「早上好」", "新加坡早上好"),
    ("我 love 新加坡", "我 love 新加坡"),  # a space next to Latin stays
])
def test_mandarin(raw, expected):
    assert normalize_text(raw) == expected


def test_tamil_keeps_vowel_signs_and_virama():
    raw = "வணக்கம், உலகம்! கௌரவம் நன்றி."
    out = normalize_text(raw)
    assert out == "வணக்கம் உலகம் கௌரவம் நன்றி"
    # every combining mark of the input survives
    marks = lambda s: [c for c in s if unicodedata.category(c) in ("Mn", "Mc")]  # noqa: E731
    assert marks(out) == marks(unicodedata.normalize("NFC", raw))


def test_tamil_decomposed_input_is_composed():
    decomposed = "\u0b95\u0bc6\u0bd7"  # KA + E sign + AU length mark == KA + AU sign
    assert normalize_text(decomposed) == "\u0b95\u0bcc"


def test_tamil_zero_width_joiners_kept():
    assert normalize_text("க்\u200dஷ") == "க்\u200dஷ"


@pytest.mark.parametrize("raw, expected", [
    ("Saya suka makan nasi lemak.", "saya suka makan nasi lemak"),
    ("Apa khabar? Baik-baik sahaja!", "apa khabar baikbaik sahaja"),
    ("Jalan Ampang, K.L.", "jalan ampang kl"),
])
def test_malay(raw, expected):
    assert normalize_text(raw) == expected


def test_nothing_left_is_empty():
    assert normalize_text(" ¿¡ ... ! ") == ""
    assert normalize_text("") == ""


def test_strip_qwen_prefix():
    assert strip_qwen_prefix("language English<asr_text>Hello.") == "Hello."
    assert strip_qwen_prefix("language None<asr_text>你好") == "你好"
    assert strip_qwen_prefix("no prefix here") == "no prefix here"
    assert strip_qwen_prefix("the language of <asr_text> inside") == "the language of <asr_text> inside"


def test_script_share_and_the_code_switching_tolerance():
    from polyglot_lion.data.text import DEFAULT_FOREIGN_SCRIPT_SHARE, fits_script, script_share, script_words

    assert script_words("我要去 mrt station") == ["han", "han", "han", "latin", "latin"]
    assert script_words("நான் office போறேன்") == ["tamil", "latin", "tamil"]  # vowel signs continue a word
    assert script_share("hello world 123 !!", "en") == 0.0 and script_share("", "zh") == 0.0
    assert script_share("我要去 mrt station", "zh") == pytest.approx(0.4)
    # the probe's case: Mandarin in an English dataset
    assert not fits_script("你好吗 我很好", "en") and not fits_script("hello 你好吗", "en")
    # code-switching within the tolerance is kept
    assert fits_script("ok lah we go 巴刹", "en") and fits_script("நான் office போறேன்", "ta")
    assert fits_script("我要去 mrt station", "zh") and DEFAULT_FOREIGN_SCRIPT_SHARE == 0.5
    assert not fits_script("saya suka அம்மா", "ms", tolerance=0.2)
    with pytest.raises(ValueError, match=r"language 'fr' has no known script; known: \['en', 'ms', 'ta', 'zh'\]"):
        script_share("bonjour", "fr")
    with pytest.raises(ValueError, match=r"tolerance must be in \[0, 1\] \(is 2\)"):
        fits_script("x", "en", tolerance=2)
