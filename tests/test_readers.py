"""Readers turn every cell into text the way a person reads it: no '12.0', dates in ISO form, BOMs dropped."""

from datetime import datetime

import pytest
import xlsxwriter

from brain.errors import SourceError
from brain.ingest.manifest import FileSpec
from brain.ingest.readers import read_header, read_table


def test_excel_numbers_and_dates_read_as_people_write_them(tmp_path):
    path = tmp_path / "book.xlsx"
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("登记表")
    date = wb.add_format({"num_format": "yyyy-mm-dd"})
    ws.write_row(0, 0, ["编号", "楼层", "面积", "出生日期", "备注"])
    ws.write_number(1, 0, 1001)
    ws.write_number(1, 1, 12)
    ws.write_number(1, 2, 85.5)
    ws.write_datetime(1, 3, datetime(1990, 5, 17), date)
    ws.write_string(1, 4, "００１２")
    wb.close()
    table = read_table(FileSpec(name="book", path=str(path), layer="登记表"), path)
    assert table.frame.to_pylist() == [{"编号": "1001", "楼层": "12", "面积": "85.5",
                                        "出生日期": "1990-05-17 00:00:00", "备注": "００１２"}]


def test_csv_with_bom_and_gbk(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("编号,名称\n1,甲\n".encode("utf-8-sig"))
    spec = FileSpec(name="bom", path=str(bom))
    assert read_header(spec, bom)[0] == ["编号", "名称"]
    assert read_table(spec, bom).frame.column_names == ["编号", "名称"]
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("编号,名称\n1,乙\n".encode("gbk"))
    assert read_table(FileSpec(name="g", path=str(gbk), encoding="gbk"), gbk).frame.to_pylist() == [
        {"编号": "1", "名称": "乙"}]
    with pytest.raises(SourceError, match="encoding"):
        read_table(FileSpec(name="g", path=str(gbk)), gbk)


def test_leading_zeros_and_empty_cells_survive(tmp_path):
    path = tmp_path / "z.csv"
    path.write_text("id,code,blank\n007,0450,\n", encoding="utf-8")
    assert read_table(FileSpec(name="z", path=str(path)), path).frame.to_pylist() == [
        {"id": "007", "code": "0450", "blank": ""}]
