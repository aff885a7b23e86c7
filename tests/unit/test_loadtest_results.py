"""The multi-mechanize results.csv row format, its parser, and the JMeter XML (JTL) writer."""
import io
import xml.etree.ElementTree as ET

import pytest

from TornadoServices.LoadTest.results import (
    JtlWriter,
    ResultSet,
    ResultsFormatError,
    ResultsWriter,
    Row,
    cleanErrorMessage,
    formatRow,
    parseCustomTimers,
    parseRow,
    readCsv,
)


def test_format_row_matches_multimechanize_layout():
    row = Row(7, 1.23456, 1700000000, "user_group-1", 0.0123456789, "", {"a": 0.5, "b": 1e-05})
    assert formatRow(row) == "7,1.235,1700000000,user_group-1,0.012346,,{'a': 0.5, 'b': 1e-05}\n"


def test_row_round_trip_with_commas_inside_custom_timers():
    row = Row(1, 0.5, 1700000001, "g", 0.25, "failed badly", {"x": 0.1, "y": 0.2, "z": 3.0})
    assert parseRow(formatRow(row)) == Row(1, 0.5, 1700000001, "g", 0.25, "failed badly", {"x": 0.1, "y": 0.2, "z": 3.0})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{}", {}),
        ("{'a': 0.5}", {"a": 0.5}),
        ("{'a': 1, 'b': -2.5e-3}", {"a": 1.0, "b": -0.0025}),
        ("{'a': inf}", {"a": float("inf")}),
        ('{"it\'s": 0.1}', {"it's": 0.1}),
        ("{'a': 'text', 'b': None}", {"a": "text", "b": None}),
        ("{'a': {'nested': 1}}", {"a": {"nested": 1}}),
    ],
)
def test_parse_custom_timers(text, expected):
    assert parseCustomTimers(text) == expected


def test_parse_custom_timers_rejects_non_dicts():
    with pytest.raises(ResultsFormatError):
        parseCustomTimers("[1, 2]")
    with pytest.raises(ResultsFormatError):
        parseCustomTimers("__import__('os')")


def test_parse_row_errors_name_the_problem():
    with pytest.raises(ResultsFormatError, match="7 comma-separated"):
        parseRow("1,2,3\n")
    with pytest.raises(ResultsFormatError, match="bad number"):
        parseRow("x,0.1,1,g,0.1,,{}\n")


def test_read_csv_reports_file_and_line(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("1,0.000,1700000000,g,0.100000,,{}\n\nbroken line\n")
    with pytest.raises(ResultsFormatError, match=r"results.csv:3:"):
        list(readCsv(path))


def test_clean_error_message_removes_commas_and_line_breaks():
    assert cleanErrorMessage(ValueError("a, b,\nc")) == "a b c"
    assert cleanErrorMessage(AssertionError()) == "AssertionError"
    assert cleanErrorMessage(RuntimeError(",")) == "RuntimeError"
    assert cleanErrorMessage(KeyError("k")) == "'k'"


def test_results_writer_numbers_rows_and_writes_csv_and_jtl(tmp_path):
    writer = ResultsWriter(tmp_path, xmlReport=True, startEpoch=1700000000.0)
    writer.addRow(0.1, 1700000000, "g1", 0.2, "", {"t": 0.1})
    writer.addRow(0.2, 1700000000, "g2", 0.3, "bad <thing> & \x01more", {})
    writer.close()
    rows = list(readCsv(tmp_path / "results.csv"))
    assert [r.count for r in rows] == [1, 2]
    assert rows[1].error == "bad <thing> & \x01more"
    assert writer.resultSet.errorCount == 1
    root = ET.parse(tmp_path / "results.jtl").getroot()
    assert root.tag == "testResults"
    samples = root.findall("sample")
    assert [s.get("lb") for s in samples] == ["g1", "g2"]
    assert samples[0].get("s") == "true" and samples[1].get("s") == "false"
    assert samples[0].get("t") == "200" and samples[0].get("ts") == "1700000000100"
    assert samples[1].get("rm") == "bad <thing> & more"
    assert [s.get("lb") for s in samples[0].findall("sample")] == ["g1.t"]


def test_jtl_writer_on_a_stream():
    stream = io.StringIO()
    writer = JtlWriter(stream, 0.0)
    writer.write(Row(1, 1.0, 1, "g", 0.0015, "", {"bad": "x"}))
    writer.close()
    root = ET.fromstring(stream.getvalue())
    (sample,) = root.findall("sample")
    assert sample.get("t") == "2" and sample.findall("sample") == []


def test_estimated_start_epoch():
    rows = [Row(1, 0.4, 1700000010, "g", 0.1, "", {}), Row(2, 2.7, 1700000012, "g", 0.1, "", {})]
    # the start lies in [epoch - elapsed, epoch - elapsed + 1) for every row
    assert ResultSet.fromRows(rows).estimatedStartEpoch() == pytest.approx(1700000009.6)
    assert ResultSet().estimatedStartEpoch() == 0.0
