"""The web page's bounds and its login rules, without a browser (tests/test_web.py has the real page)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from model.errors import UserError
from pipelines.app.access import Access, is_loopback
from pipelines.app.cli import cli
from pipelines.app.uploads import PageLimits, forget, pasted_texts, spreadsheet_safe, uploaded_texts

SMALL = PageLimits(max_rows=10, max_upload_mb=1, max_text_chars=100, max_expanded_mb=1)


def test_pasted_texts_within_the_limits():
    assert pasted_texts("a\n\n  \nb", SMALL) == ["a", "b"]
    with pytest.raises(UserError, match="more than 10 complaints"):
        pasted_texts("\n".join(["x"] * 11), SMALL)
    with pytest.raises(UserError, match="101 characters, more than this page takes"):
        pasted_texts("y" * 101, SMALL)
    with pytest.raises(UserError, match="larger than this page takes \\(1 MB\\)"):
        pasted_texts("z" * (2**20 + 1), SMALL)


def test_csv_upload_is_read_no_deeper_than_the_row_limit(tmp_path):
    """Bytes that cannot be decoded sit 2 MB past row 11: the refusal is about rows, so reading stopped."""
    path = tmp_path / "deep.csv"
    rows = "".join(f"complaint {i}\n" for i in range(200_000))
    path.write_bytes(b"text\n" + rows.encode() + b"\xff\xfe broken \xff\n")
    with pytest.raises(UserError, match="more than 10 complaints"):
        uploaded_texts(str(path), PageLimits(max_rows=10, max_upload_mb=10))
    with pytest.raises(UserError, match="not UTF-8"):  # the same file read whole does hit the bad bytes
        uploaded_texts(str(path), PageLimits(max_rows=300_000, max_upload_mb=10))


def test_parquet_upload_refused_from_its_footer(tmp_path):
    many = tmp_path / "many.parquet"
    pq.write_table(pa.table({"text": [f"c{i}" for i in range(11)]}), many)
    with pytest.raises(UserError, match="more than 10 complaints"):
        uploaded_texts(str(many), SMALL)
    bomb = tmp_path / "bomb.parquet"  # 2 MB of text compressed to a few KB
    pq.write_table(pa.table({"text": ["a" * (2 * 2**20)]}), bomb, compression="zstd")
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(UserError, match="decompresses to 2 MB, more than this page takes"):
        uploaded_texts(str(bomb), SMALL)


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b"PAR1 not really"), "not a readable Parquet file"),
    (lambda p: pq.write_table(pa.table({"body": ["a"]}), p), "no 'text' column \\(columns: body\\)"),
    (lambda p: pq.write_table(pa.table({"text": [1, 2]}), p), "holds int64, not text"),
])
def test_bad_parquet_uploads_are_one_sentence(tmp_path, make, message):
    path = tmp_path / "bad.parquet"
    make(path)
    with pytest.raises(UserError, match=message):
        uploaded_texts(str(path), SMALL)


def test_other_uploads_are_one_sentence(tmp_path):
    (tmp_path / "big.csv").write_bytes(b"text\n" + b"a\n" * 2**20)
    with pytest.raises(UserError, match=r"2\.0 MB, more than this page takes \(1 MB\)"):
        uploaded_texts(str(tmp_path / "big.csv"), SMALL)
    (tmp_path / "notes.txt").write_text("text\nhello\n")
    with pytest.raises(UserError, match=r"Upload a \.csv or \.parquet file"):
        uploaded_texts(str(tmp_path / "notes.txt"), SMALL)
    with pytest.raises(UserError, match="no longer on the server"):
        uploaded_texts(str(tmp_path / "gone.csv"), SMALL)
    pd.DataFrame({"text": ["ok", "n" * 101]}).to_csv(tmp_path / "long.csv", index=False)
    with pytest.raises(UserError, match="101 characters"):
        uploaded_texts(str(tmp_path / "long.csv"), SMALL)


def test_forget_removes_the_upload_and_its_folder(tmp_path):
    folder = tmp_path / "hash"
    folder.mkdir()
    (folder / "c.csv").write_text("text\nx\n")
    forget(str(folder / "c.csv"))
    assert not folder.exists()
    forget(None)  # nothing uploaded: nothing to do


def test_spreadsheet_safe_defuses_every_formula_lead():
    frame = pd.DataFrame({"text": ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "plain", None],
                          "confidence": [0.5] * 8})
    safe = spreadsheet_safe(frame)
    assert safe["text"].tolist()[:6] == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx"]
    assert safe["text"][6] == "plain" and pd.isna(safe["text"][7])
    assert safe["confidence"].tolist() == frame["confidence"].tolist()  # numbers stay numbers
    assert frame["text"][0].startswith("=")  # the page's table keeps the text as written


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.5", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("10.1.2.3", False), ("example.org", False)])
def test_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_credentials(tmp_path):
    assert Access().credentials() == []
    assert Access(host="0.0.0.0", auth="ana:s3:cret").credentials() == [("ana", "s3:cret")]
    assert Access(host="0.0.0.0", insecure_no_auth=True).credentials() == []
    with pytest.raises(UserError, match="reachable from the network, and it has no login"):
        Access(host="0.0.0.0").credentials()
    file = tmp_path / "users"
    file.write_text("# who may sign in\nana:one\n\nbo:two\n")
    assert Access(host="10.0.0.1", auth_file=str(file)).credentials() == [("ana", "one"), ("bo", "two")]
    file.write_text("ana\n")
    with pytest.raises(UserError, match="line 1: expected USER:PASSWORD"):
        Access(auth_file=str(file)).credentials()
    file.write_bytes(b"a:b\n" * 20_000)
    with pytest.raises(UserError, match="larger than 64 KiB"):
        Access(auth_file=str(file)).credentials()
    with pytest.raises(UserError, match="cannot read it"):
        Access(auth_file=str(tmp_path / "missing")).credentials()
    with pytest.raises(UserError, match="--auth: expected USER:PASSWORD"):
        Access(auth=":pw").credentials()


def test_serve_refuses_an_open_network_page_in_one_line(tmp_path):
    """Refused before the model is even looked at (the model path does not exist)."""
    result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "missing"), "--host", "0.0.0.0"],
                                catch_exceptions=False)
    assert result.exit_code == 2
    assert result.output.startswith("error: --host 0.0.0.0 makes the page reachable from the network")
    assert len(result.output.strip().splitlines()) == 1
