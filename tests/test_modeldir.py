"""The one model-directory format: round trip, atomic writes, and every error naming its file."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from jaxdos import modeldir


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Inner:
    a: float = 1.0
    pair: tuple[str, float] = ("x", 0.5)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Outer:
    n: int = 3
    inner: _Inner = _Inner()
    many: tuple[_Inner, ...] = ()
    maybe: float | None = None
    items: tuple[tuple[str, float], ...] = ()


PARAMS = {
    "net": {"kernel": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.ones(4)},
    "count": np.array(7, np.int32),
}


def _save(path, kind="toy", **kw):
    return modeldir.save(path, kind, {"n": 1}, PARAMS, {"note": "hi"}, **kw)


def test_round_trip(tmp_path):
    out = _save(tmp_path / "m")
    assert out == (tmp_path / "m").resolve()
    d = modeldir.read(out, kind="toy")
    assert d.kind == "toy" and d.config == {"n": 1} and d.meta == {"note": "hi"}
    for key in ("kernel", "bias"):
        got, want = d.params["net"][key], PARAMS["net"][key]
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert d.params["count"].dtype == np.int32 and int(d.params["count"]) == 7
    assert modeldir.read_kind(out) == "toy"
    doc = json.loads((out / modeldir.MODEL_FILE).read_text())
    assert doc["format_version"] == modeldir.FORMAT_VERSION
    assert doc["params"]["bytes"] == (out / modeldir.PARAMS_FILE).stat().st_size


def test_save_replaces_a_model_and_keeps_other_files(tmp_path):
    _save(tmp_path)
    (tmp_path / "train_state").mkdir()
    modeldir.save(tmp_path, "toy", {"n": 2}, {"w": np.zeros(2)})
    d = modeldir.read(tmp_path)
    assert d.config == {"n": 2} and list(d.params) == ["w"]
    assert (tmp_path / "train_state").is_dir()
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.json",
        "params.msgpack",
        "train_state",
    ]


def test_save_rejects_what_would_not_read_back(tmp_path):
    with pytest.raises(ValueError, match=r"params\['net'\]"):
        modeldir.save(tmp_path, "toy", {}, {"net": [np.zeros(2)]})
    with pytest.raises(ValueError, match="model.json"):
        modeldir.save(tmp_path, "toy", {}, PARAMS, {"bad": object()})
    assert not (tmp_path / "model.json").exists()


def test_wrong_kind(tmp_path):
    _save(tmp_path, kind="cdosgen")
    with pytest.raises(
        ValueError, match=r"model\.json: a 'cdosgen' model, expected a 'dossampler'"
    ):
        modeldir.read(tmp_path, kind="dossampler")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.json: not found"):
        modeldir.read(tmp_path / "nowhere")
    _save(tmp_path)
    (tmp_path / "params.msgpack").unlink()
    with pytest.raises(FileNotFoundError, match=r"params\.msgpack: not found"):
        modeldir.read(tmp_path)


def test_old_format_folder_names_the_migration(tmp_path):
    (tmp_path / "sampler.json").write_text("{}")
    with pytest.raises(
        FileNotFoundError, match=r"old-format .*`python -m jaxdos.pipeline.migrate "
    ):
        modeldir.read(tmp_path)


def test_truncated_params(tmp_path):
    _save(tmp_path)
    blob = (tmp_path / "params.msgpack").read_bytes()
    (tmp_path / "params.msgpack").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"params\.msgpack: \d+ bytes, model\.json says \d+"):
        modeldir.read(tmp_path)


def test_flipped_byte(tmp_path):
    _save(tmp_path)
    blob = bytearray((tmp_path / "params.msgpack").read_bytes())
    blob[len(blob) - 3] ^= 0x01  # inside the last array: still valid msgpack, wrong values
    (tmp_path / "params.msgpack").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=r"params\.msgpack: sha256 differs .*corrupt"):
        modeldir.read(tmp_path)


def test_unknown_version_and_bad_json(tmp_path):
    _save(tmp_path)
    path = tmp_path / "model.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(ValueError, match=r"model\.json: unknown format_version 99"):
        modeldir.read(tmp_path)
    path.write_text(json.dumps({"kind": "toy"}))
    with pytest.raises(ValueError, match=r"model\.json: missing"):
        modeldir.read(tmp_path)
    path.write_text('{"kind": ')
    with pytest.raises(ValueError, match=r"model\.json: not valid JSON"):
        modeldir.read(tmp_path)


def test_configs_round_trip_through_json_exactly():
    cfg = _Outer(
        n=5,
        inner=_Inner(a=0.1 + 0.2, pair=("y", 1e-300)),
        many=(_Inner(a=2.0), _Inner(pair=("z", -0.0))),
        maybe=1.0 / 3.0,
        items=(("a", 1.5), ("b", 2.5)),
    )
    text = json.dumps(modeldir.config_to_json(cfg))
    back = modeldir.config_from_json(_Outer, json.loads(text))
    assert back == cfg and type(back.many) is tuple and type(back.items[0]) is tuple
    assert modeldir.config_from_json(_Outer, modeldir.config_to_json(_Outer())) == _Outer()
    # An int where a float is declared (a hand-written file) comes back as a float.
    assert type(modeldir.config_from_json(_Inner, {"a": 2}).a) is float


def test_config_from_json_rejects_unknown_fields():
    with pytest.raises(ValueError, match=r"_Outer\.inner: unknown field\(s\) \['b'\]"):
        modeldir.config_from_json(_Outer, {"inner": {"b": 1}})
    with pytest.raises(ValueError, match=r"_Outer\.inner\.pair: expected 2 items"):
        modeldir.config_from_json(_Outer, {"inner": {"pair": ["x"]}})


def test_a_save_killed_before_model_json_is_an_error_not_a_mix(tmp_path, monkeypatch):
    _save(tmp_path)
    real = modeldir.atomic_write

    def killed_at_model_json(path, data):
        if Path(path).name == modeldir.MODEL_FILE:
            raise KeyboardInterrupt  # the process dies between the two renames
        real(path, data)

    monkeypatch.setattr(modeldir, "atomic_write", killed_at_model_json)
    with pytest.raises(KeyboardInterrupt):
        modeldir.save(tmp_path, "toy", {"n": 2}, {"w": np.zeros(3)})
    with pytest.raises(ValueError, match=r"params\.msgpack: .*(bytes|sha256)"):
        modeldir.read(tmp_path)


def test_export_replaces_the_destination_with_a_readable_copy(tmp_path):
    src = tmp_path / "src"
    modeldir.save(src, "toy", {"n": 2}, {"w": np.arange(3.0)})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale.txt").write_text("old")
    assert modeldir.export(src, dest) == dest
    assert not (dest / "stale.txt").exists()
    np.testing.assert_array_equal(modeldir.read(dest).params["w"], np.arange(3.0))
    with pytest.raises(FileNotFoundError):
        modeldir.export(tmp_path / "nothing", tmp_path / "d2")
    assert not (tmp_path / "d2").exists()
