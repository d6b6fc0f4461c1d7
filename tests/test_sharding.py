"""Sharding helpers: padding, placement round trips, multi-host flag handling, 8 fake devices."""

import jax
import numpy as np
import pytest
from fake_devices import run_on_fake_devices

from jaxdos import sharding


def test_padded_size_and_pad_batch():
    assert [sharding.padded_size(n, 8) for n in (0, 1, 8, 9, 16)] == [8, 8, 8, 16, 16]
    x = np.arange(10).reshape(5, 2)
    (px, py), n = sharding.pad_batch((x, np.arange(5)), 4)
    assert n == 5 and px.shape == (8, 2) and py.shape == (8,)
    np.testing.assert_array_equal(px[:5], x)
    np.testing.assert_array_equal(px[5:], np.repeat(x[:1], 3, 0))  # padded with row 0
    with pytest.raises(ValueError, match="leading batch"):
        sharding.pad_batch((x, np.arange(4)), 4)
    with pytest.raises(ValueError, match="multiple"):
        sharding.padded_size(3, 0)


def test_single_device_mesh_round_trip():
    mesh = sharding.make_mesh()
    assert mesh.axis_names == (sharding.DATA_AXIS,)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    arr = sharding.shard_batch(x, mesh)
    rows, index = sharding.local_rows(arr)
    np.testing.assert_array_equal(rows, x)
    np.testing.assert_array_equal(index, np.arange(4))
    assert sharding.process_row_range(4, mesh) == (0, 4)
    with pytest.raises(ValueError, match="devices"):
        sharding.make_mesh(len(jax.devices()) + 1)


def test_initialize_distributed_flags(monkeypatch):
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    assert sharding.initialize_distributed() is False  # single process: nothing starts
    with pytest.raises(ValueError, match="num_processes, process_id"):
        sharding.initialize_distributed("127.0.0.1:1234")
    with pytest.raises(ValueError, match="process_id"):
        sharding.initialize_distributed("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="coordinator"):
        sharding.initialize_distributed("localhost", 2, 0)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    with pytest.raises(ValueError, match="coordinator, process_id"):
        sharding.initialize_distributed()
    assert sharding.initialize_distributed("127.0.0.1:1234", 1, 0) is False
    monkeypatch.setenv("JAX_PROCESS_ID", "one")
    with pytest.raises(ValueError, match=r"process_id: expected an integer in \$JAX_PROCESS_ID"):
        sharding.initialize_distributed()


def test_eight_fake_devices():
    script = """
        import jax, jax.numpy as jnp, numpy as np
        from jaxdos import sharding
        mesh = sharding.make_mesh()
        assert mesh.devices.size == 8
        (x,), n = sharding.pad_batch((np.arange(20 * 3, dtype=np.float32).reshape(20, 3),), 8)
        assert x.shape == (24, 3) and n == 20
        arr = sharding.shard_batch(x, mesh)
        assert arr.sharding.spec == sharding.batch_sharding(mesh).spec
        assert len({s.device for s in arr.addressable_shards}) == 8
        params = sharding.replicate({"w": np.ones((3, 2), np.float32)}, mesh)
        f = jax.jit(lambda p, x: x @ p["w"], out_shardings=sharding.batch_sharding(mesh))
        y = f(params, arr)
        rows, index = sharding.local_rows(y)
        np.testing.assert_allclose(rows, x @ np.ones((3, 2)))
        np.testing.assert_array_equal(index, np.arange(24))
        assert sharding.process_row_range(24, mesh) == (0, 24)
        assert sharding.make_mesh(2).devices.size == 2
        print("ok")
        """
    assert run_on_fake_devices(script, timeout=300).strip() == "ok"


_MAP_ROWS_SCRIPT = """
    import jax, jax.numpy as jnp, numpy as np
    from jaxdos import sharding

    def row_loss(w, row):  # a gather and a segment sum, the network's kinds of ops
        x, idx = row
        h = jnp.tanh(x[idx] @ w)
        return jax.ops.segment_sum(h, idx % 3, num_segments=3).sum() ** 2

    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    xs = jnp.asarray(rng.normal(size=(8, 6, 4)), jnp.float32)
    idx = jnp.asarray(rng.integers(0, 6, size=(8, 10)), jnp.int32)

    def total(w, xs, idx):
        return jnp.sum(sharding.map_rows(row_loss, w, (xs, idx)))

    reference = sum(row_loss(w, (xs[i], idx[i])) for i in range(8))
    grad_ref = sum(jax.grad(row_loss)(w, (xs[i], idx[i])) for i in range(8))
    value, grad = jax.jit(jax.value_and_grad(total))(w, xs, idx)
    mesh = sharding.make_mesh()
    with jax.set_mesh(mesh):
        xs_s, idx_s = sharding.shard_batch((np.asarray(xs), np.asarray(idx)), mesh)
        w_s = sharding.replicate(w, mesh)
        value_m, grad_m = jax.jit(jax.value_and_grad(total))(w_s, xs_s, idx_s)
    for got in (value, value_m):
        np.testing.assert_allclose(got, reference, rtol=1e-5)
    for got in (grad, grad_m):
        np.testing.assert_allclose(got, grad_ref, rtol=1e-4, atol=1e-5)
    one = jax.jit(lambda w, r: sharding.map_rows(row_loss, w, r)).lower(w, (xs[:1], idx[:1]))
    assert one.as_text().count("stablehlo.while") == 0  # one row: the plain program, no loop
    print(len(jax.devices()), "ok")
"""


def test_map_rows_is_the_sum_of_plain_rows_on_one_four_and_eight_devices():
    for devices in (1, 4, 8):  # 8, 2 and 1 rows per device
        out = run_on_fake_devices(_MAP_ROWS_SCRIPT, devices=devices, timeout=300)
        assert out.split()[-2:] == [str(devices), "ok"]
