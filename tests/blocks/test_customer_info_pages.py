"""NotifyCustomerInformation pages: at most 512 characters of data each (the schema's maxLength), lines kept whole
where they fit, a bounded number of pages however much the station holds."""

from __future__ import annotations

from appliance.blocks.customer_info import MAX_PAGES, PAGE_CHARS, _pages


def test_lines_are_packed_whole_into_pages() -> None:
    lines = [f"transaction {n:04d} on EVSE 1: started 2026-12-01T00:00:00.000Z, 7400 Wh" for n in range(20)]
    pages = list(_pages(lines))
    assert all(len(p) <= PAGE_CHARS for p in pages)
    assert "\n".join(pages).split("\n") == lines  # nothing lost, nothing cut mid-line
    assert len(pages) == 3  # 69-character lines: 7 per page (7 × 70 - 1 = 489 characters)


def test_a_line_longer_than_a_page_is_split() -> None:
    pages = list(_pages(["short", "x" * 1200, "tail"]))
    assert pages == ["short", "x" * 512, "x" * 512, "x" * 176 + "\ntail"]


def test_the_report_is_bounded() -> None:
    pages = list(_pages(["y" * 500] * 1000))
    assert len(pages) == MAX_PAGES
    assert all(len(p) <= PAGE_CHARS for p in pages)
    assert pages[-1].endswith("(report cut: more than this station sends in one report)")


def test_nothing_still_sends_one_message() -> None:
    assert list(_pages([])) == ["no data"]
