"""All sharding of the project: one `data` mesh axis, batch on `P('data')`, params replicated.

Every batched computation (DOS sampling, rejection, crystal sampling) runs as one `jit` whose
inputs are placed with the `NamedSharding`s built here; XLA partitions the batch axis over the mesh
and nothing is written per device by hand (no `pmap`, `shard_map` only for independent per-device
work). Batches are padded to a multiple of the global device count so that the last batch never
recompiles and results never depend on the device count: per-example randomness comes from
`fold_in(key, global_example_index)` in the samplers, so padding rows changes nothing for the rest.

Multi-host. `initialize_distributed` wraps `jax.distributed.initialize` (flags first, then the
environment variables `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`, else the
cluster auto-detection of JAX for SLURM / Open MPI / TPU pods when asked). After it, `make_mesh()`
spans the devices of all processes; a jitted function then produces global arrays of which each
process reads only its addressable rows (`local_rows`), in global-example order.

Axis type. The mesh axis is created with an explicit `AxisType.Auto` (recent `jax.make_mesh`
defaults to `Explicit`). The samplers are written per example and vmapped; with
`Auto` the batch sharding of their inputs propagates through `lax.scan`, `jax.grad` and gathers
without every op needing an explicit-sharding rule, which `Explicit` would demand.
"""

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "make_mesh",
    "local_mesh",
    "training_mesh",
    "place",
    "batch_sharding",
    "replicated_sharding",
    "padded_size",
    "pad_batch",
    "shard_batch",
    "replicate",
    "map_rows",
    "local_rows",
    "process_row_range",
    "initialize_distributed",
]

DATA_AXIS = "data"


def make_mesh(devices=None, *, axis_type: AxisType = AxisType.Auto) -> Mesh:
    """A 1-D mesh with the `data` axis over `devices` (default: all devices of all processes).

    Args:
        devices: a sequence of `jax.Device`, an int n (the first n of `jax.devices()`), or None.
        axis_type: the mesh axis type; `Auto` by default (see the module docstring).

    Raises:
        ValueError: naming `devices` if the count is not in [1, len(jax.devices())].
    """
    available = jax.devices()
    if devices is None:
        devices = available
    elif isinstance(devices, int | np.integer):
        if not 1 <= int(devices) <= len(available):
            raise ValueError(f"devices: expected in [1, {len(available)}], got {devices}")
        devices = available[: int(devices)]
    devices = list(devices)
    if not devices:
        raise ValueError(f"devices: expected in [1, {len(available)}] devices, got none")
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(axis_type,))


def local_mesh(devices=None, *, name: str = "devices") -> Mesh:
    """A 1-D `data` mesh over devices of this process (default: all of them).

    Work that each process does on its own (a crystal chunk of a screen) uses this mesh;
    `make_mesh` spans every process (and `training_mesh` by default).

    Args:
        devices: None, an int n (the first n of `jax.local_devices()`) or a list of local devices.
        name: the argument named in errors.

    Raises:
        ValueError: naming `name`, if the count is out of range or a device is not this process's.
    """
    available = jax.local_devices()
    if devices is None:
        devices = available
    elif isinstance(devices, int | np.integer):
        if not 1 <= int(devices) <= len(available):
            raise ValueError(f"{name}: expected in [1, {len(available)}], got {devices}")
        devices = available[: int(devices)]
    devices = list(devices)
    if not devices:
        raise ValueError(f"{name}: expected in [1, {len(available)}] devices, got none")
    foreign = [d for d in devices if d.process_index != jax.process_index()]
    if foreign:
        raise ValueError(
            f"{name}: {foreign} belong to other processes; this call runs on its own process's "
            "devices (multi-host runs split the work by chunks, docs/multihost.md)"
        )
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def training_mesh(devices=None, *, name: str = "devices") -> Mesh:
    """The `data` mesh a training run (or one crystal generation call spanning processes,
    `generate_crystals(across_processes=True)`) is data-parallel on.

    Default: every device of every process (`make_mesh()`; in a single-process run, every local
    device). A subset (`local_mesh(devices)`) only in a single-process run: every process takes
    part in every step of a multi-process one.

    Raises:
        ValueError: naming `name`, for a subset in a multi-process run or a bad count.
    """
    if devices is None:
        return make_mesh()
    if jax.process_count() > 1:
        raise ValueError(
            f"{name}: a multi-process run uses every device of every process; leave it unset"
        )
    return local_mesh(devices, name=name)


def place(tree, mesh: Mesh, *, split: bool):
    """Place a pytree on `mesh`: every leaf's leading axis split over `data` (`split`) or the whole
    tree on every device. Leaves: numpy or jax arrays and typed PRNG keys.

    On a mesh spanning processes every process passes the same values (its copy of the global
    batch or state) and supplies only its addressable slices (`make_array_from_callback`: no
    communication, where `jax.device_put` of host values all-gathers them to check that they
    agree, and refuses typed keys). Jax arrays stay on device, except a process-local one placed
    on a mesh spanning processes (it goes through the host).
    """
    sharding = batch_sharding(mesh) if split else replicated_sharding(mesh)
    return jax.tree.map(lambda x: _put(x, sharding), tree)


def _put(x, sharding: NamedSharding):
    if isinstance(x, jax.Array):
        if sharding.is_fully_addressable or not x.is_fully_addressable:
            return jax.device_put(x, sharding)  # local to local, global to global: on device
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # no host form: its key data
            data = _put(jax.random.key_data(x), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data`, other axes whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, keys, scalars)."""
    return NamedSharding(mesh, P())


def padded_size(n: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= n (and >= multiple)."""
    if n < 0 or multiple < 1:
        raise ValueError(f"n, multiple: expected n >= 0 and multiple >= 1, got {n}, {multiple}")
    return max(multiple, -(-n // multiple) * multiple)


def pad_batch(tree, multiple: int):
    """Pad every leaf's leading axis `[B, ...] -> [B', ...]` with copies of row 0.

    Row 0 (not zeros) keeps padded rows numerically ordinary (no log(0), no empty spectra).

    Returns:
        (padded tree, B) with B the number of real rows.
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError("tree: expected at least one array leaf")
    n = int(np.shape(leaves[0])[0])
    if any(int(np.shape(x)[0]) != n for x in leaves):
        raise ValueError("tree: expected every leaf to share the leading batch size")
    target = padded_size(n, multiple)

    def pad(x):
        x = np.asarray(x)
        if target == n:
            return x
        fill = np.repeat(x[:1], target - n, axis=0)
        return np.concatenate([x, fill], axis=0)

    return jax.tree.map(pad, tree), n


def shard_batch(tree, mesh: Mesh):
    """Place host arrays (global batch, identical on every process) on `mesh` batch-sharded.

    Each leaf's leading axis must divide by the mesh size (use `pad_batch` first). In a
    multi-process run every process passes the same global array and keeps only its addressable
    rows (`place`).
    """
    size = mesh.devices.size
    for x in jax.tree.leaves(tree):
        if np.shape(x)[0] % size:
            raise ValueError(
                f"batch: leading size {np.shape(x)[0]} is not a multiple of the {size} mesh devices"
            )
    return place(tree, mesh, split=True)


def replicate(tree, mesh: Mesh):
    """Place a pytree (parameters) on every device of `mesh` (`place`)."""
    return place(tree, mesh, split=False)


def map_rows(fn, shared, rows):
    """`fn(shared, row)` for every row (leading index) of the pytree `rows`, results stacked.

    Each device of the context mesh's `data` axis (`jax.set_mesh`) runs its own rows, one after
    the other, as a plain program: `shard_map` with `shared` replicated, then `lax.map`. Without
    such a mesh, one device runs every row. Never a `vmap`: XLA:CPU differentiates a vmapped
    network 2.9x slower, even at one row (docs/performance.md). The transpose of the replicated
    `shared` sums its cotangents over the devices, so `jax.grad` through this is the gradient of
    the whole.
    """

    def local(shared, rows):
        if jax.tree.leaves(rows)[0].shape[0] == 1:
            return jax.tree.map(lambda x: x[None], fn(shared, jax.tree.map(lambda x: x[0], rows)))
        return jax.lax.map(lambda row: fn(shared, row), rows)

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or DATA_AXIS not in mesh.axis_names or mesh.shape[DATA_AXIS] == 1:
        return local(shared, rows)
    return jax.shard_map(local, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=P(DATA_AXIS))(
        shared, rows
    )


def local_rows(array) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a batch-sharded global array held by this process, in global order.

    Returns:
        (rows `[B_local, ...]` numpy, their global row indices `[B_local]` int64). Replicated
        copies (several local devices holding the same rows) are deduplicated.
    """
    pieces = {}
    for shard in array.addressable_shards:
        sl = shard.index[0] if shard.index else slice(None)
        start = 0 if sl.start is None else sl.start
        if start not in pieces:
            pieces[start] = np.asarray(shard.data)
    starts = sorted(pieces)
    if not starts:
        return np.zeros((0,) + array.shape[1:], array.dtype), np.zeros((0,), np.int64)
    rows = np.concatenate([pieces[s] for s in starts], axis=0)
    index = np.concatenate([np.arange(s, s + pieces[s].shape[0], dtype=np.int64) for s in starts])
    return rows, index


def process_row_range(global_batch: int, mesh: Mesh) -> tuple[int, int]:
    """[start, stop) of the global batch rows this process holds under `batch_sharding(mesh)`.

    Assumes this process's devices are contiguous along the mesh (true for `make_mesh()`, which
    follows `jax.devices()` ordered by process).
    """
    size = mesh.devices.size
    if global_batch % size:
        raise ValueError(f"global_batch: expected a multiple of {size}, got {global_batch}")
    per = global_batch // size
    mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
    return min(mine) * per, (max(mine) + 1) * per


def _int_from_env(var: str, name: str) -> int | None:
    value = os.environ.get(var)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}: expected an integer in ${var}, got {value!r}") from None


def initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
) -> bool:
    """Start JAX's multi-host runtime if this run is multi-process; returns True if it did.

    Precedence: arguments, then `JAX_COORDINATOR_ADDRESS` / `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID`;
    with `auto=True` and nothing given, JAX's own cluster detection (SLURM, Open MPI, Cloud TPU) is
    used. With nothing given and `auto=False` this is a single-process run and nothing starts.

    Args:
        coordinator: "host:port" of process 0.
        num_processes: total processes (>= 1).
        process_id: this process, in [0, num_processes).

    Raises:
        ValueError: naming the flag that is missing or out of range.
    """
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None:
        num_processes = _int_from_env("JAX_NUM_PROCESSES", "num_processes")
    if process_id is None:
        process_id = _int_from_env("JAX_PROCESS_ID", "process_id")
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if not any(given):
        if auto:
            jax.distributed.initialize()
            return True
        return False
    if not all(given):
        missing = [
            n
            for n, g in zip(("coordinator", "num_processes", "process_id"), given, strict=True)
            if not g
        ]
        raise ValueError(f"{', '.join(missing)}: required together with the other multi-host flags")
    if ":" not in coordinator:
        raise ValueError(f"coordinator: expected 'host:port', got {coordinator!r}")
    if num_processes < 1:
        raise ValueError(f"num_processes: expected >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id: expected in [0, {num_processes}), got {process_id}")
    if num_processes == 1:
        return False
    jax.distributed.initialize(
        coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )
    return True
