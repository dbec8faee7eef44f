"""Label sheets: what a sheet may look like, how each row finds its capture, and how
every mistake is reported with its line instead of stopping the whole sheet."""

import os

import pytest

from rainbench.errors import RainbenchError
from rainbench.shards.manifest import REJECTS, SAMPLES, rows_to_table
from rainbench.tagging import labels as labels_module
from rainbench.tagging.labels import (
    Label,
    LabelProblem,
    LabelSheetError,
    match_labels,
    read_label_sheet,
)

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64
KEY_A, KEY_B, KEY_C = SHA_A[:24], SHA_B[:24], SHA_C[:24]
SOURCE_SHA_A = "0" * 64  # the file as found, before ingest removed its GPS


def _samples(*rows: dict):
    return rows_to_table([{"layer": "rainy", **row} for row in rows], SAMPLES)


SAMPLES_TABLE = _samples(
    {"key": KEY_A, "sha256": SHA_A, "source_sha256": SOURCE_SHA_A, "source_path": "a.jpg"},
    {"key": KEY_B, "sha256": SHA_B, "source_sha256": SHA_B, "source_path": "dir/b.jpg"},
    {"key": KEY_C, "sha256": SHA_C, "source_sha256": SHA_C, "source_path": "c.jpg"},
)
REJECTS_TABLE = rows_to_table(
    [
        {"source_path": "copy-of-a.jpg", "reason": "duplicate", "duplicate_of": KEY_A},
        {"source_path": "broken.jpg", "reason": "corrupt"},
    ],
    REJECTS,
)


def _sheet(tmp_path, text: str, encoding: str = "utf-8"):
    path = tmp_path / "labels.csv"
    path.write_text(text, encoding=encoding)
    return path


def _match(tmp_path, text: str, samples=SAMPLES_TABLE):
    path = _sheet(tmp_path, text)
    labels, problems = read_label_sheet(path)
    assert problems == []
    return match_labels(labels, samples, REJECTS_TABLE, sheet="labels.csv")


def test_a_plain_sheet_gives_one_label_per_row(tmp_path):
    path = _sheet(tmp_path, "source_path,rain_type,note\na.jpg,storm,lamp glare\nc.jpg,drizzle,\n")
    labels, problems = read_label_sheet(path)
    assert problems == []
    assert labels == [
        Label(2, "source_path", "a.jpg", "storm", "lamp glare"),
        Label(3, "source_path", "c.jpg", "drizzle", None),
    ]


def test_bom_extra_columns_comments_and_blank_lines_are_tolerated(tmp_path):
    text = (
        "# labelled by hand, March\n"
        " Source_Path , camera , RAIN_TYPE \r\n"
        "\r\n"
        "a.jpg, phone , Storm \r\n"
        "# c.jpg,phone,drizzle\r\n"
        ",,\r\n"
        '"dir/b.jpg","phone, old","Fog-Like"\r\n'
    )
    labels, problems = read_label_sheet(_sheet(tmp_path, text, encoding="utf-8-sig"))
    assert problems == []
    assert labels == [
        Label(4, "source_path", "a.jpg", "storm", None),
        Label(7, "source_path", "dir/b.jpg", "fog-like", None),
    ]


def test_a_row_is_numbered_by_the_line_it_starts_on(tmp_path):
    text = 'source_path,rain_type,note\na.jpg,storm,"two\nlines"\nc.jpg,hail,\n'
    labels, problems = read_label_sheet(_sheet(tmp_path, text))
    assert labels[0].note == "two\nlines"
    assert [problem.line for problem in problems] == [4]


def test_each_identifier_finds_its_capture(tmp_path):
    text = (
        "key,sha256,source_path,rain_type\n"
        f"{KEY_A.upper()},,,storm\n"
        f",{SHA_B},,streak\n"
        ",,./c.jpg,drizzle\n"
    )
    match = _match(tmp_path, text)
    assert match.problems == []
    assert {key: label.rain_type for key, label in match.labels.items()} == {
        KEY_A: "storm",
        KEY_B: "streak",
        KEY_C: "drizzle",
    }
    assert [label.ident for label in match.labels.values()] == ["key", "sha256", "source_path"]


def test_a_row_uses_its_most_precise_identifier(tmp_path):
    match = _match(tmp_path, f"source_path,key,rain_type\nc.jpg,{KEY_A},storm\n")
    assert list(match.labels) == [KEY_A]


def test_the_sha256_of_the_file_as_found_finds_its_capture(tmp_path):
    match = _match(tmp_path, f"sha256,rain_type\n{SOURCE_SHA_A},storm\n")
    assert list(match.labels) == [KEY_A]


def test_windows_separators_find_the_posix_source_path(tmp_path):
    match = _match(tmp_path, "source_path,rain_type\ndir\\b.jpg,storm\n")
    assert list(match.labels) == [KEY_B]


def test_a_backslash_in_a_name_finds_that_file_before_the_windows_reading(tmp_path):
    samples = _samples(
        {"key": KEY_A, "sha256": SHA_A, "source_path": "dir\\b.jpg"},  # a name with "\\"
        {"key": KEY_B, "sha256": SHA_B, "source_path": "dir/b.jpg"},
        {"key": KEY_C, "sha256": SHA_C, "source_path": "bad\\xff.jpg"},  # a byte not UTF-8
    )
    sheet = "source_path,rain_type\ndir\\b.jpg,storm\nbad\\xff.jpg,drizzle\n"
    match = _match(tmp_path, sheet, samples)
    assert list(match.labels) == [KEY_A, KEY_C]


def test_only_an_unquoted_hash_starts_a_comment(tmp_path):
    samples = _samples({"key": KEY_A, "sha256": SHA_A, "source_path": "#hash.jpg"})
    text = 'source_path,rain_type\n"#hash.jpg",storm\n  # a comment,drizzle\n'
    match = _match(tmp_path, text, samples)
    assert {key: label.rain_type for key, label in match.labels.items()} == {KEY_A: "storm"}


def test_a_quote_in_a_comment_opens_no_cell(tmp_path):
    # Read as a row, the comment's quote opened a cell that took the next two rows in,
    # up to the inch mark, and was skipped with the comment without a word.
    text = (
        "source_path,rain_type,note\n"
        '# checked by,"Anna\n'
        "a.jpg,storm,lamp\n"
        'dir/b.jpg,drizzle,drops 2"\n'
        'c.jpg,streak,"two\n# lines"\n'
        '# and,"one left open\n'
    )
    labels, problems = read_label_sheet(_sheet(tmp_path, text))
    assert problems == []
    assert labels == [
        Label(3, "source_path", "a.jpg", "storm", "lamp"),
        Label(4, "source_path", "dir/b.jpg", "drizzle", 'drops 2"'),
        Label(5, "source_path", "c.jpg", "streak", "two\n# lines"),  # a cell's line: no comment
    ]


def test_a_source_path_matches_across_unicode_normal_forms(tmp_path):
    composed, decomposed = "Caf\u00e9/r\u00e9gen.jpg", "Cafe\u0301/re\u0301gen.jpg"
    samples = _samples(
        {"key": KEY_A, "sha256": SHA_A, "source_path": decomposed},  # as macOS stores it
        {"key": KEY_B, "sha256": SHA_B, "source_path": "\u00e9t\u00e9.jpg"},
    )
    text = f"source_path,rain_type\n{composed},storm\ne\u0301te\u0301.jpg,drizzle\n"
    match = _match(tmp_path, text, samples)
    assert match.problems == []
    assert {key: label.rain_type for key, label in match.labels.items()} == {
        KEY_A: "storm",
        KEY_B: "drizzle",
    }


def test_the_exact_unicode_spelling_wins_over_another_normal_form(tmp_path):
    samples = _samples(
        {"key": KEY_A, "sha256": SHA_A, "source_path": "Cafe\u0301.jpg"},
        {"key": KEY_B, "sha256": SHA_B, "source_path": "Caf\u00e9.jpg"},
    )
    match = _match(tmp_path, "source_path,rain_type\nCaf\u00e9.jpg,storm\n", samples)
    assert list(match.labels) == [KEY_B]


def test_spaces_around_a_source_path_are_kept_before_they_are_stripped(tmp_path):
    samples = _samples(
        {"key": KEY_A, "sha256": SHA_A, "source_path": " leading space.jpg"},
        {"key": KEY_B, "sha256": SHA_B, "source_path": "b.jpg"},
    )
    text = 'source_path,rain_type\n" leading space.jpg",storm\n" b.jpg ",drizzle\n" x.jpg",storm\n'
    labels, problems = read_label_sheet(_sheet(tmp_path, text))
    assert problems == []
    match = match_labels(labels, samples, sheet="labels.csv")
    assert {key: label.rain_type for key, label in match.labels.items()} == {
        KEY_A: "storm",
        KEY_B: "drizzle",
    }
    assert [str(problem) for problem in match.problems] == [
        "labels.csv:4: no capture has source_path ' x.jpg'"
    ]


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_semicolon_or_tab_separated_sheet_is_read(tmp_path, separator):
    rows = ["# from Excel", "key;rain_type;note", f"{KEY_A};storm;lamp, glare", ";;"]
    labels, problems = read_label_sheet(
        _sheet(tmp_path, "\n".join(row.replace(";", separator) for row in rows) + "\n")
    )
    assert problems == []
    assert labels == [Label(3, "key", KEY_A, "storm", "lamp, glare")]


def test_clean_is_a_label(tmp_path):
    match = _match(tmp_path, "source_path,rain_type\na.jpg,CLEAN\n")
    assert match.labels[KEY_A].rain_type == "clean"


@pytest.mark.parametrize("rain_type", ["hail", "fog", "foglike", "fog_like"])
def test_an_unknown_rain_type_names_its_line_and_the_allowed_ones(tmp_path, rain_type):
    path = _sheet(tmp_path, f"source_path,rain_type\na.jpg,storm\nc.jpg,{rain_type}\n")
    labels, problems = read_label_sheet(path)
    assert [label.line for label in labels] == [2]
    assert [str(problem) for problem in problems] == [
        f"{path}:3: unknown rain type '{rain_type}' "
        "(allowed: drizzle, streak, storm, fog-like, clean)"
    ]


def test_an_unknown_rain_type_shows_a_character_that_prints_as_nothing(tmp_path):
    # "storm" pasted with a zero-width space inside would read as "storm" itself.
    _, problems = read_label_sheet(_sheet(tmp_path, "source_path,rain_type\na.jpg,stor\u200bm\n"))
    assert problems[0].message.startswith("unknown rain type 'stor\\u200bm' (allowed:")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (",,storm", "no key or source_path on this row"),
        ("a.jpg,,", "no rain type (allowed: drizzle, streak, storm, fog-like, clean)"),
        (",abc,storm", "key 'abc' is not 24 hex digits"),
        (f",{'g' * 24},storm", f"key '{'g' * 24}' is not 24 hex digits"),
        # A zero-width space pasted after a key is shown, not invisible.
        (f",{KEY_A}\u200b,storm", f"key '{KEY_A}\\u200b' is not 24 hex digits"),
    ],
)
def test_row_mistakes_are_problems_not_errors(tmp_path, row, message):
    labels, problems = read_label_sheet(_sheet(tmp_path, f"source_path,key,rain_type\n{row}\n"))
    assert labels == []
    assert [(problem.line, problem.message) for problem in problems] == [(2, message)]


def test_a_short_sha256_is_a_problem(tmp_path):
    _, problems = read_label_sheet(_sheet(tmp_path, f"sha256,rain_type\n{SHA_A[:63]},storm\n"))
    assert problems[0].message == f"sha256 '{SHA_A[:63]}' is not 64 hex digits"


def test_a_label_for_no_capture_is_a_problem(tmp_path):
    match = _match(tmp_path, f"source_path,key,rain_type\nnew.jpg,,storm\n,{'d' * 24},storm\n")
    assert match.labels == {}
    assert [str(problem) for problem in match.problems] == [
        "labels.csv:2: no capture has source_path 'new.jpg'",
        f"labels.csv:3: no capture has key '{'d' * 24}'",
    ]


def test_rows_that_name_no_capture_are_listed_five_then_counted(tmp_path):
    # A file refused at ingest is of this dataset: listed whatever the count.
    nowhere = "".join(f"new-{n}.jpg,storm\n" for n in range(8))
    match = _match(tmp_path, f"source_path,rain_type\na.jpg,storm\n{nowhere}broken.jpg,storm\n")
    assert list(match.labels) == [KEY_A]
    assert [str(problem) for problem in match.problems] == [
        *(
            f"labels.csv:{line}: no capture has source_path 'new-{line - 3}.jpg'"
            for line in (3, 4, 5, 6, 7)
        ),
        "labels.csv:8: and 3 more rows from here on that name no capture of this dataset",
        "labels.csv:11: source_path 'broken.jpg' was refused at ingest (corrupt)",
    ]
    assert sum(problem.rows for problem in match.problems) == 9


def test_a_sheet_none_of_whose_rows_names_a_capture_is_said_once(tmp_path):
    # Another dataset's sheet: not a line per row, one asking whether it is.
    keys = [f"{n:024x}" for n in range(1, 81)]
    match = _match(tmp_path, "key,rain_type\n" + "".join(f"{key},streak\n" for key in keys))
    assert match.labels == {}
    assert [(problem.line, problem.rows) for problem in match.problems] == [(2, 80)]
    assert match.problems[0].message == (
        f"none of the sheet's 80 label rows names a capture of this dataset (the first: no "
        f"capture has key '{keys[0]}'): is it another dataset's sheet?"
    )


def test_a_refused_duplicate_points_at_the_capture_it_repeats(tmp_path):
    match = _match(tmp_path, "source_path,rain_type\ncopy-of-a.jpg,storm\nbroken.jpg,storm\n")
    assert match.labels == {}
    assert [problem.message for problem in match.problems] == [
        "source_path 'copy-of-a.jpg' was refused at ingest (duplicate): "
        f"label the capture it repeats by key {KEY_A}",
        "source_path 'broken.jpg' was refused at ingest (corrupt)",
    ]


def test_a_source_path_under_two_ingest_roots_is_ambiguous(tmp_path):
    samples = _samples(
        {"key": KEY_A, "sha256": SHA_A, "source_path": "a.jpg", "source_root": "/one"},
        {"key": KEY_B, "sha256": SHA_B, "source_path": "a.jpg", "source_root": "/two"},
    )
    match = _match(tmp_path, "source_path,rain_type\na.jpg,storm\n", samples)
    assert match.labels == {}
    assert [problem.message for problem in match.problems] == [
        "ambiguous: 2 captures have source_path 'a.jpg'; use key or sha256"
    ]


def test_disagreeing_labels_of_one_capture_apply_neither(tmp_path):
    text = f"source_path,key,rain_type\na.jpg,,storm\nc.jpg,,streak\n,{KEY_A},drizzle\n"
    match = _match(tmp_path, text)
    assert list(match.labels) == [KEY_C]
    assert [str(problem) for problem in match.problems] == [
        f"labels.csv:4: conflicts with line 2 for capture {KEY_A} "
        "(storm there, drizzle here): neither is applied"
    ]


def test_agreeing_labels_of_one_capture_keep_the_first(tmp_path):
    text = f"source_path,key,rain_type,note\na.jpg,,storm,first\n,{KEY_A},STORM,second\n"
    match = _match(tmp_path, text)
    assert match.problems == []
    assert match.labels == {KEY_A: Label(2, "source_path", "a.jpg", "storm", "first")}


def test_a_clean_layer_capture_takes_only_the_clean_label(tmp_path):
    samples = _samples(
        {"key": KEY_A, "sha256": SHA_A, "source_path": "a.jpg", "layer": "clean"},
        {"key": KEY_B, "sha256": SHA_B, "source_path": "b.jpg", "layer": "clean"},
    )
    match = _match(tmp_path, "source_path,rain_type\na.jpg,storm\nb.jpg,clean\n", samples)
    assert list(match.labels) == [KEY_B]
    assert [problem.message for problem in match.problems] == [
        f"capture {KEY_A} is in the clean layer, which takes no rain type"
    ]


def test_problems_come_in_line_order(tmp_path):
    labels = [
        Label(5, "source_path", "x.jpg", "storm", None),
        Label(3, "source_path", "y.jpg", "storm", None),
    ]
    match = match_labels(labels, SAMPLES_TABLE)
    assert [str(problem) for problem in match.problems] == [
        "line 3: no capture has source_path 'y.jpg'",
        "line 5: no capture has source_path 'x.jpg'",
    ]


def test_problem_text_names_the_sheet_and_line():
    problem = LabelProblem("labels.csv", 7, "unknown rain type 'hail'")
    assert str(problem) == "labels.csv:7: unknown rain type 'hail'"


NEEDS = "key, sha256 or source_path"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("source_path,note\na.jpg,x\n", "no rain_type column (the header is: source_path,note)"),
        (
            "camera,rain_type\nphone,storm\n",
            f"no column naming the capture: needs {NEEDS} (the header is: camera,rain_type)",
        ),
        (
            "key,rain_type,Rain_Type\nab,storm,drizzle\n",
            "the column rain_type appears twice (the header is: key,rain_type,Rain_Type)",
        ),
        ("# nothing yet\n\n", f"no header row (it needs rain_type and one of {NEEDS})"),
        ("", f"no header row (it needs rain_type and one of {NEEDS})"),
    ],
)
def test_an_unusable_sheet_is_an_error_naming_the_file(tmp_path, text, message):
    path = _sheet(tmp_path, text)
    with pytest.raises(LabelSheetError) as caught:
        read_label_sheet(path)
    assert str(caught.value) == f"{path}: {message}"


def test_a_missing_sheet_is_an_error(tmp_path):
    # A RainbenchError: a script that catches rainbench's expected failures in one
    # clause (as the CLI does) catches this one too.
    with pytest.raises(RainbenchError, match="no such label sheet") as caught:
        read_label_sheet(tmp_path / "missing.csv")
    assert isinstance(caught.value, LabelSheetError)


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_a_sheet_that_is_not_utf8_is_an_error(tmp_path, bom):
    path = tmp_path / "labels.csv"
    path.write_bytes(bom + "source_path,rain_type\ncafé.jpg,storm\n".encode("latin-1"))
    with pytest.raises(LabelSheetError, match=r"labels\.csv:2: not UTF-8 text \(byte 0xe9\)"):
        read_label_sheet(path)


HEADER = "source_path,rain_type,note\n"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # The reported sheet: every row after the open quote would become line 3's note.
        (
            'a.jpg,storm,ok\nc.jpg,drizzle,"lamp glare\ndir/b.jpg,storm,\nnew.jpg,streak,x\n',
            '3: a quote (") opened on this line is never closed',
        ),
        ('a.jpg,storm,"lamp glare', '2: a quote (") opened on this line is never closed'),
        ('a.jpg,"storm\n', '2: a quote (") opened on this line is never closed'),
        # Closed by a later row's quote: text follows it, which strict CSV refuses.
        (
            'a.jpg,storm,"lamp glare\nc.jpg,drizzle,"drops" on lens\n',
            "2: not a readable CSV (',' expected after '\"' on line 3)",
        ),
        # Closed by a quote that ends a later row: the rows between read as labels.
        (
            'a.jpg,storm,"lamp glare\nc.jpg,drizzle,x\r\ndir/b.jpg,storm,5"\n',
            '2: a quote (") opened on this line is not closed: its cell runs on over line 3, '
            "which reads as a label row",
        ),
        (
            'a.jpg,storm,"two\nlines"\nc.jpg,streak,"three\nmore\nb.jpg,clean,5"\n',
            '4: a quote (") opened on this line is not closed: its cell runs on over line 6, '
            "which reads as a label row",
        ),
    ],
)
def test_an_unclosed_quote_is_an_error_naming_the_line_it_opens_on(tmp_path, rows, message):
    path = _sheet(tmp_path, HEADER + rows)
    with pytest.raises(LabelSheetError) as caught:
        read_label_sheet(path)
    assert str(caught.value) == f"{path}:{message}"


def test_an_unclosed_quote_in_the_header_is_an_error(tmp_path):
    path = _sheet(tmp_path, 'source_path,rain_type,"note\na.jpg,storm,x"\nc.jpg,streak,y\n')
    with pytest.raises(LabelSheetError, match=r"labels\.csv:1: a quote .* in the header"):
        read_label_sheet(path)


def test_a_sheet_that_is_a_fifo_or_too_large_is_refused_unread(tmp_path, monkeypatch):
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)  # read, it would wait for a writer forever
    with pytest.raises(LabelSheetError, match=r"fifo\.csv: cannot read .*not a regular file"):
        read_label_sheet(fifo)
    monkeypatch.setattr(labels_module, "MAX_SHEET_BYTES", 1 << 20)
    path = _sheet(tmp_path, "source_path,rain_type\n" + "a.jpg,storm\n" * 100_000)
    with pytest.raises(LabelSheetError, match=r"labels\.csv: larger than 1 MiB; refused"):
        read_label_sheet(path)


def test_the_label_pages_guard_before_a_formula_is_taken_off_a_note(tmp_path):
    # The page exports '=… so that a spreadsheet shows the note rather than run it.
    text = "source_path,rain_type,note\na.jpg,storm,'=HYPERLINK(x)\nb.jpg,storm,'-lit\n"
    path = _sheet(tmp_path, text + "c.jpg,storm,'quoted\nd.jpg,storm,-faint\n")
    labels, problems = read_label_sheet(path)
    assert problems == []
    assert [label.note for label in labels] == ["=HYPERLINK(x)", "-lit", "'quoted", "-faint"]


def test_a_note_over_lines_that_holds_no_label_row_is_kept(tmp_path):
    text = HEADER + 'a.jpg,storm,"drops, lens\nstorm, a.jpg?\n\n"\nc.jpg,streak,\n'
    labels, problems = read_label_sheet(_sheet(tmp_path, text))
    assert problems == [] and [label.line for label in labels] == [2, 6]
    assert labels[0].note == "drops, lens\nstorm, a.jpg?"


def test_ingest_refuses_a_sheet_with_an_open_quote_in_one_line(tmp_path):
    from click.testing import CliRunner

    from rainbench.cli import main

    sheet = _sheet(tmp_path, HEADER + 'a.jpg,storm,"lamp glare\nc.jpg,drizzle,\n')
    out = tmp_path / "ds"
    args = ["ingest", str(tmp_path), "--out", str(out), "--labels", str(sheet)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and not out.exists()  # refused before any work
    assert result.output == f'error: {sheet}:2: a quote (") opened on this line is never closed\n'
