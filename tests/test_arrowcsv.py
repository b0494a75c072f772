"""The Arrow fast paths of the CSV run: the streaming reader reads exactly what pandas reads (or hands the file to
pandas), and timestamps parsed by Arrow give exactly what the per-row parser gives, errors worded alike."""

from __future__ import annotations

import io
import re
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import AS_OF, AS_OF_DT, load_policy
from engine.facts import elapsed
from engine.frames import _elapsed_column, _plain_micros
from engine.tabular import NotArrowReadable, arrow_text_tables, read_csv_text

# --- timestamps: Arrow vs the per-row parser ----------------------------------------------------------------

DIGITS = st.integers(0, 99).map(lambda n: f"{n:02d}")
OFFSETS = st.sampled_from(["", "Z", "z", "+00:00", "-01:00", "+05:30", "+14:00", "-23:59", "+24:00", "+0530",
                           "+05", "+05:30:15", "+05:60", " Z", "UTC"])


@st.composite
def stamps(draw) -> str:
    """ISO 8601-ish texts: the plain shape, each part pushed past its range, other separators, junk around."""
    year = draw(st.sampled_from(["0000", "0001", "1969", "1970", "2024", "2025", "2026", "9999", "2026"]) |
                st.integers(0, 9999).map(lambda n: f"{n:04d}"))
    text = f"{year}-{draw(DIGITS)}-{draw(DIGITS)}"
    if draw(st.booleans()):
        text += draw(st.sampled_from(["T", " ", "t", "_", "T "])) + draw(DIGITS)
        for _ in range(draw(st.integers(0, 2))):
            text += ":" + draw(DIGITS)
        if draw(st.booleans()):
            text += draw(st.sampled_from([".", ","])) + draw(st.text("0123456789", min_size=0, max_size=9))
        text += draw(OFFSETS)
    return draw(st.sampled_from(["{}", " {}", "{} ", "{}\n", "x{}"])).format(text)


HOSTILE = st.one_of(stamps(), st.text(max_size=30), st.sampled_from(
    ["2026-11-26", "2026-02-29", "2024-02-29", "2026-11-26T12:00:00Z", "2026-11-26T12:00:00.000001Z",
     "2026-11-27T00:00:00Z", "2026-11-26T12:00:00.000001", "0001-01-01T00:00:00+14:00", "2026-11-26T12:00:00-00:01",
     "２０２６-11-26", "2026-11-26T12:00:00.5+05:30", "20261126", "2026-W48-4", "2026-330", "", " ", "NaN"]))


# Centuries back a count of microseconds is no exact float: dividing it as a float rounds twice, and these come
# out one unit in the last place off the per-row parser's timedelta.total_seconds().
FAR_PAST = ["1559-08-16T20:24:50.220153Z", "1572-01-23T14:17:46.840775Z", "1063-09-07T13:03:30.912271Z"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(texts=FAR_PAST, per="hours_since_contact")
@given(texts=st.lists(HOSTILE, min_size=1, max_size=40), per=st.sampled_from(["hours_since_contact",
                                                                              "days_since_refund"]))
def test_arrow_timestamps_agree_with_the_per_row_parser(texts, per):
    fact = load_policy("default").spec.facts[per]
    half = len(texts) // 2  # as Arrow's CSV reader gives a column: in several chunks
    chunked = pd.Series(pd.array(pa.chunked_array([texts[:half], texts[half:]], pa.large_string()), dtype="str"))
    for col in (pd.Series(texts, dtype="str"), chunked, pd.Series(texts, dtype=object)):  # CSV; in memory
        values, bad = _elapsed_column(fact, col, AS_OF_DT)
        some = np.arange(len(texts)) % 3 != 1  # the cells of some rows only: the others' numbers were given
        some_values, some_bad = _elapsed_column(fact, col, AS_OF_DT, some)
        np.testing.assert_array_equal(some_values, values[some])
        assert some_bad.tolist() == bad[some].tolist()
        for text, value, is_bad in zip(texts, values, bad, strict=True):
            expected, problem = (None, None) if not text.strip() else elapsed(fact, text, AS_OF_DT)
            assert bool(is_bad) == (problem is not None), text
            if expected is None:
                assert np.isnan(value), text
            else:
                assert value == expected, text  # exact: one rounding, as timedelta.total_seconds() gives


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(HOSTILE, min_size=1, max_size=30))
def test_arrow_timestamps_word_errors_as_the_per_row_path(texts):
    policy = load_policy("default")
    frame = pd.DataFrame({"order_id": [f"A{i}" for i in range(len(texts))], "status": "shipped",
                          "seller_reply": "no_reply", "contacted_at": texts, "paid_at": texts,
                          "refund_started_at": texts}).astype("str")
    cells = policy.evaluate(frame, as_of=AS_OF)
    rows = policy.evaluate(frame, as_of=AS_OF, method="rows")
    for column in ("action", "rule_id", "message", "error"):
        assert cells[column].tolist() == rows[column].tolist(), column


def test_plain_stamps_are_parsed_by_arrow_not_per_row(monkeypatch):
    """The fast path is taken: with the per-row parser broken, plain stamps still parse, the rest do not."""
    import engine.frames

    monkeypatch.setattr(engine.frames, "elapsed", lambda fact, raw, as_of: (None, "per-row"))
    fact = load_policy("default").spec.facts["hours_since_contact"]
    col = pd.Series(["2026-11-26T10:00:00Z", "2026-11-26 11:30", "2026-11-25", "2026-02-30", "soon"], dtype="str")
    values, bad = _elapsed_column(fact, col, AS_OF_DT)
    assert values[:3].tolist() == [2.0, 0.5, 36.0]
    assert bad.tolist() == [False, False, False, True, True]


# The plain ISO 8601 stamps, which frames._plain_micros reads byte by byte: this is their definition.
PLAIN_ISO = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([T ]([01][0-9]|2[0-3]):[0-5][0-9]"
                       r"(:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?")
PARTS = st.tuples(st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32), st.none() | st.integers(0, 24),
                  st.integers(0, 60), st.none() | st.integers(0, 60), st.none() | st.text("0123456789", min_size=1,
                                                                                         max_size=7),
                  st.sampled_from(["", "Z", "+00:00", "-01:00", "+05:30", "-23:59", "+24:00", "+05:60", "-00:00"]),
                  st.sampled_from(["T", " "]))


def near_plain(parts) -> str:
    """A stamp of the plain shape with every part possibly one past its range."""
    year, month, day, hour, minute, second, fraction, offset, sep = parts
    text = f"{year:04d}-{month:02d}-{day:02d}"
    if hour is not None:
        text += f"{sep}{hour:02d}:{minute:02d}"
        if second is not None:
            text += f":{second:02d}" + ("" if fraction is None else "." + fraction)
        text += offset
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(texts=["0001-01-01", "9999-12-31T23:59:59.999999-23:59", "2024-02-29T00:00+14:00", "2023-02-29",
                "2026-11-26T12:00:00.5Z", "2026-11-26 12:00:00.123456", "2026-11-26T12:00Z"])
@example(texts=["2026-11-26T24:00", "2026-11-26T23:60", "2026-11-26T23:59:60", "2026-13-01", "2026-00-01",
                "2026-11-00", "2026-11-32", "2026-11-26T12:00+24:00", "2026-11-26T12:00+05:60", "0000-01-01",
                "2026-11-26T12:00:00.1234567", "2026-11-26Z", "2026-11-26T12", "2026/11/26", "2026-11-26t12:00"])
@given(texts=st.lists(HOSTILE | PARTS.map(near_plain) | st.none(), min_size=1, max_size=50))
def test_the_byte_parser_reads_the_plain_stamps_and_nothing_else(texts):
    """Every text of PLAIN_ISO's shape on a date that exists is read, to the microsecond datetime reads it at (a
    naive one in UTC); every other text is left to the per-row parser."""
    filled = pc.fill_null(pa.array(texts, type=pa.large_string()), "")
    plain, micros = _plain_micros(filled, pc.binary_length(filled).to_numpy())
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    for text, is_plain, us in zip(texts, plain.tolist(), micros.tolist(), strict=True):
        expected = None
        if text is not None and PLAIN_ISO.fullmatch(text):
            try:
                stamp = datetime.fromisoformat(text)
            except ValueError:  # Feb 30, year 0
                stamp = None
            if stamp is not None:
                expected = (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)) - epoch
        assert is_plain == (expected is not None), text
        if expected is not None:
            assert us == expected // timedelta(microseconds=1), text


# --- the streaming reader: Arrow reads what pandas reads, or hands the file over ------------------------------

PIECES = [b"a", b"b", b" ", b'"', b'""', "é".encode(), b"\t", b"\x0c", b"\\", b"'", "\u2028".encode(), b"\r",
          b"\n", b"\r\n", b"\xef\xbb\xbf", b",", b"NaN", b"\x00", b"\xff", b"\x01"]


@st.composite
def hostile_csvs(draw) -> bytes:
    width = draw(st.integers(1, 4))
    header = ",".join(f"c{i}" for i in range(width)).encode()
    lines = [draw(st.sampled_from([header, b"\xef\xbb\xbf" + header, b'"c0",' + header[3:] if width > 1 else header]))]
    for _ in range(draw(st.integers(0, 12))):
        fields = draw(st.integers(0, width + 1)) if draw(st.integers(0, 5)) == 0 else width
        cells = []
        for _ in range(fields):
            body = b"".join(draw(st.lists(st.sampled_from(PIECES), max_size=4)))
            kind = draw(st.integers(0, 2))
            cells.append(b'"' + body.replace(b'"', b'""') + b'"' if kind == 0 else
                         body.translate(None, b'",\r\n') if kind == 1 else body)
        lines.append(b",".join(cells))
    ends = draw(st.lists(st.sampled_from([b"\n", b"\r\n", b"\n\n"]), min_size=len(lines), max_size=len(lines)))
    data = b"".join(line + end for line, end in zip(lines, ends, strict=True))
    return data.rstrip(b"\r\n") if draw(st.booleans()) else data


def pandas_rows(data: bytes, delimiter: str = ",") -> list[list[str]] | None:
    """The rows pandas reads (None: it refuses the file)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = read_csv_text(io.BytesIO(data), sep=delimiter)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError):
        return None
    return frame.astype(object).values.tolist()


def arrow_rows(data: bytes, header: list[str], chunksize: int, delimiter: str = ",") -> list[list[str]] | None:
    """The rows Arrow reads (None: it hands the file to pandas); every chunk but the last is chunksize rows."""
    try:
        chunks = [t.to_pandas() for t in arrow_text_tables(io.BytesIO(data), header, chunksize, delimiter)]
    except NotArrowReadable:
        return None
    assert all(len(c) == chunksize for c in chunks[:-1]) and all(len(c) for c in chunks)
    assert all(list(c.columns) == header for c in chunks)
    return [row for c in chunks for row in c.astype(object).values.tolist()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hostile_csvs(), chunksize=st.sampled_from([1, 2, 5, 100_000]), delimiter=st.sampled_from(",;\t|"))
def test_arrow_reader_reads_what_pandas_reads_or_hands_over(data, chunksize, delimiter):
    data = data.replace(b",", delimiter.encode())  # the same file separated otherwise, read with that separator
    header = ["c0", "c1", "c2", "c3"][: data.lstrip(b"\xef\xbb\xbf").split(b"\n")[0].count(delimiter.encode()) + 1]
    got = arrow_rows(data, header, chunksize, delimiter)
    if got is not None:
        assert got == pandas_rows(data, delimiter)


@pytest.mark.parametrize("data", [
    b'c0,c1\n1,"2\n',  # an open quote at the end: Arrow would read '2\n', pandas refuses the file
    b'c0,c1\n1,"2\r',
    b"c0,c1\n1,2\n3\n",  # a short row: pandas fills it, Arrow refuses
    b"c0,c1\n1,2\n   \n3,4\n",  # a line of spaces: pandas skips it
    b"c0,c1\n1,\xc0\x80\n",  # not UTF-8: pandas words it
    b"c0,c1\n1,2\r3,4\r",  # lone CRs
    b"c0,c1\nS\x00,2\n",  # a NUL byte
])
def test_arrow_reader_hands_over_where_the_parsers_differ(data):
    assert arrow_rows(data, ["c0", "c1"], 100_000) is None


@pytest.mark.parametrize("delimiter", list(",;\t|"))
def test_arrow_reader_takes_a_clean_file_in_exact_chunks(delimiter):
    lines = ["order_id,status,note"] + [f'A{i},shipped,"x, ""{i}""\nnext"' for i in range(25)]
    lines = [line.replace(",", delimiter, 2 if i else 3) for i, line in enumerate(lines)]  # the quoted ', ' stays
    data = ("\ufeff" + "\r\n".join(lines) + "\r\n").encode()
    rows = arrow_rows(data, ["order_id", "status", "note"], 10, delimiter)
    assert rows == pandas_rows(data, delimiter)
    assert rows is not None and len(rows) == 25 and rows[3] == ["A3", "shipped", 'x, "3"\nnext']
