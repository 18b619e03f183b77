"""`CaptionTable` keeps its rows in packed string columns: same rows, any text, any chunking."""

from __future__ import annotations

import pickle

import pytest

from manifold_align.data import tabular
from manifold_align.data.tabular import CaptionTable, StringColumn

NOT_UTF8 = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")  # Latin-1 bytes, kept as is
ROWS = ["images/a.png", None, "", "a photo of a cat", "naïve café ☕", NOT_UTF8, "x" * 1000, None]


def test_a_column_gives_back_every_row_exactly_however_it_was_filled():
    column = StringColumn()
    column.extend(ROWS[:3])  # ASCII (and None)
    column.extend(ROWS[3:5])  # multi-byte UTF-8
    column.extend([])
    column.extend(ROWS[5:])  # not UTF-8, long, None
    assert len(column) == len(ROWS)
    assert list(column) == ROWS
    assert column[5].encode("utf-8", "surrogateescape") == b"caf\xe9 au lait"
    assert column[-1] is None and column[-4] == ROWS[-4] and column[1:4] == ROWS[1:4]
    with pytest.raises(IndexError, match="index"):
        column[len(ROWS)]
    assert list(pickle.loads(pickle.dumps(column))) == ROWS  # DataLoader workers (spawn)


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 16])
def test_a_table_reads_the_same_rows_in_chunks_of_any_size(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(tabular, "_CHUNK", chunk)
    table = tmp_path / "pairs.csv"
    table.write_bytes(
        b"filepath,caption\n"
        b"a.png,first\n"
        b'b.png,"two\nlines"\n'
        b"c.png\n"
        b"\n"
        b"d.png,caf\xe9\n"
        b"e.png,  \xe2\x98\x95 coffee \n"
    )
    ds = CaptionTable(table)
    assert list(ds.paths) == ["a.png", "b.png", "c.png", "d.png", "e.png"]
    assert list(ds.captions) == ["first", "two\nlines", None, "caf\udce9", "  ☕ coffee "]
    assert list(ds.lines) == [2, 3, 5, 7, 8]
    assert ds.caption(4) == "☕ coffee" and ds.resolve(0) == tmp_path / "a.png"
    assert [getattr(ds[i], "reason", None) for i in (2, 3)] == ["missing_caption", "bad_caption"]
