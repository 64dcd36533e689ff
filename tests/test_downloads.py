"""arena.ui.downloads: one file per kind and slice, made once per state of the votes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from arena.ui.downloads import Downloads


def test_one_file_per_kind_and_slice_made_once_per_state(tmp_path: Path) -> None:
    downloads = Downloads()
    writes: list[str] = []

    def writer(tag: str):  # type: ignore[no-untyped-def]
        def write(path: Path) -> int:
            writes.append(tag)
            path.write_text(tag, encoding="utf-8")
            return len(writes)

        return write

    async def main() -> None:
        zh = await downloads.made("ratings", "lang:zh", "5", writer("zh"))
        hant = await downloads.made("ratings", "lang:zh-Hant", "7", writer("zh-Hant"))
        # Viewing one slice again leaves the other's file alone: no export for either.
        assert await downloads.made("ratings", "lang:zh", "5", writer("zh again")) == zh
        assert hant.exists() and zh.exists()
        assert await downloads.made("ratings", "lang:zh-Hant", "7", writer("zh-Hant again")) == hant
        # Concurrent calls for one state share one export.
        paths = await asyncio.gather(*(downloads.made("battles", "overall", "3", writer("b")) for _ in range(20)))
        assert len(set(paths)) == 1
        # A newer state replaces the older file of the same kind and slice only.
        newer = await downloads.made("ratings", "lang:zh", "6", writer("zh 6"))
        assert newer.exists() and not zh.exists() and hant.exists()
        assert downloads.written[newer] == 4

    asyncio.run(main())
    assert writes == ["zh", "zh-Hant", "b", "zh 6"]
    assert sorted(p.name for p in downloads.folder().iterdir()) == [
        "battles-overall-3.csv",
        "ratings-lang_zh-6.csv",
        "ratings-lang_zh-Hant-7.csv",
    ]
