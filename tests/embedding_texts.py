"""Texts the embedder tests share: a memory, its paraphrase, an unrelated one, and text that
has broken tokenizers (empty, emoji, scripts without spaces, right-to-left, zalgo, SQL)."""

from __future__ import annotations

PAINTING = "Melanie painted a sunrise over the lake last summer."


PAINTING_AGAIN = "Last summer Melanie paints sunrises at the lake."


UNRELATED = "The quarterly tax filing deadline moved to next Tuesday."


HOSTILE = [
    "",
    "   \n\t ",
    "🎨🖌️🌅 love it 😍",
    "東京タワーに行きました。とても綺麗でした。",
    "我昨天在北京吃了烤鸭",
    "서울에서 친구를 만났어요",
    "שלום עולם, מה שלומך היום?",
    "مرحبا بالعالم، كيف حالك اليوم؟",
    "Zalgo: t̷̢̛e̵͓͝x̸̰̾t̴͎̀ and nulls \x00\x00 and \ufeff BOM",
    'FTS "operators" AND NOT (near* OR title:x) -- \'; DROP TABLE memories;',
    "a" * 10_000,
    ("Caroline went to the LGBTQ support group and it was powerful. " * 160)[:10_240],
]
