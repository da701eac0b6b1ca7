"""The one JSON writer: NaN as null, atomic replacement, clear errors for unreadable files."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lossnet.errors import LossnetError
from lossnet.utils.jsonio import clean_json, read_json, write_json


def test_values_become_json_numbers_and_nan_null(tmp_path):
    obj = {"nan": math.nan, "inf": -math.inf, "np": np.float32(0.5), "arr": np.arange(3), "t": torch.tensor([1.5]),
           "path": tmp_path, "nested": [{"x": np.int64(2)}]}
    text = write_json(tmp_path / "sub" / "a.json", obj)
    back = json.loads((tmp_path / "sub" / "a.json").read_text())
    assert back == json.loads(text)
    assert back == {"nan": None, "inf": None, "np": 0.5, "arr": [0, 1, 2], "t": [1.5], "path": str(tmp_path),
                    "nested": [{"x": 2}]}
    assert not list((tmp_path / "sub").glob(".*tmp*")), "no temporary file is left behind"


def test_clean_json_keeps_bools_and_none():
    assert clean_json({"a": True, "b": None, "c": "s", "d": 3}) == {"a": True, "b": None, "c": "s", "d": 3}


@pytest.mark.parametrize("content", [b'{"epochs": 3, "lr"', b"", b"\xff\xfe\x00garbage"])
def test_truncated_or_foreign_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(LossnetError, match="config.json") as info:
        read_json(path, fix="pass --restart")
    assert "pass --restart" in str(info.value)
    assert path.read_bytes() == content, "the file is left as it is"
