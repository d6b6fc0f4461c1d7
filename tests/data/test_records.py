"""Records: save/load round trip, subset selection, loud version mismatches."""

import json

import numpy as np
import pytest
from synthetic_records import make_records

from jaxdos.data.records import Records, concat, load_records, save_records


def test_round_trip_exact(tmp_path, records):
    path = tmp_path / "r.npz"
    save_records(path, records, oracle_version="tb-test-1", meta={"note": "x"})
    back, header = load_records(path, oracle_version="tb-test-1")
    assert header["oracle_version"] == "tb-test-1" and header["meta"] == {"note": "x"}
    for name in Records._fields:
        a, b = getattr(records, name), getattr(back, name)
        assert a.dtype == b.dtype or name == "ids", name
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_take_and_concat_invert(records):
    idx = np.arange(len(records))
    parts = [records.take(idx[:40]), records.take(idx[40:])]
    joined = concat(parts)
    assert len(joined) == len(records)
    for a, b in zip(joined, records, strict=True):
        np.testing.assert_array_equal(a, b)


def test_oracle_version_mismatch_fails_loudly(tmp_path):
    path = tmp_path / "r.npz"
    save_records(path, make_records(3), oracle_version="tb-1")
    with pytest.raises(ValueError, match="oracle_version 'tb-1' != expected 'mp'"):
        load_records(path, oracle_version="mp")
    load_records(path, oracle_version=None)  # inspection tools accept any version


def test_schema_version_mismatch_fails_loudly(tmp_path):
    path = tmp_path / "r.npz"
    save_records(path, make_records(3), oracle_version="mp")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays.pop("__header__")))
    header["schema_version"] = 999
    np.savez(path, __header__=np.asarray(json.dumps(header)), **arrays)
    with pytest.raises(ValueError, match="schema_version 999"):
        load_records(path, oracle_version="mp")


def test_replace_keeps_records_type(records):
    # NamedTuple._replace would trip over the record-count __len__; Records overrides it.
    doubled = records._replace(dos=2 * records.dos)
    assert isinstance(doubled, Records) and len(doubled) == len(records)
    np.testing.assert_array_equal(doubled.dos, 2 * records.dos)
    np.testing.assert_array_equal(doubled.ids, records.ids)
