"""Words a rendered document needs in each of its languages."""

from __future__ import annotations

from .model import Language

_WORDS: dict[str, dict[Language, str]] = {
    "page": {"zh-CN": "第 {n} 页", "en": "Page {n}"},
    "generated": {"zh-CN": "生成时间", "en": "Generated"},
    "author": {"zh-CN": "编制", "en": "Prepared by"},
    "figure": {"zh-CN": "图", "en": "Figure"},
    "table": {"zh-CN": "表", "en": "Table"},
    "missing_image": {"zh-CN": "（图像缺失：{name}）", "en": "(image missing: {name})"},
    "empty_table": {"zh-CN": "（无数据）", "en": "(no data)"},
    "colon": {"zh-CN": "：", "en": ": "},
}


def word(key: str, language: Language, **values: object) -> str:
    return _WORDS[key][language].format(**values)
