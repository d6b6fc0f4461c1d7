"""Compile counts: a run of several batches of either stage compiles once per shape bucket.

Each stage's loop is one jitted function built by a cached factory (stage 1: the rejection step
of `sampler.rejection`, stage 2: the whole-trajectory sampler of `crystal.diffusion.sampler`). Tests
wrap the factory to record every jitted function it hands out and the shapes each is called with,
then check, for every such function, `_cache_size()` (executables in its jit cache) == the number of
distinct input shape signatures it saw, and that JAX's own compile log names it exactly that many
times: a second compile of the same shapes fails the test, whatever caused it (a jit object rebuilt
per batch, a non-hashable static argument, a weak-type or dtype drift between batches).
"""

import contextlib
import dataclasses
import importlib
import logging

import jax
import numpy as np
import pytest
from pipeline.untrained import untrained_model

import jaxdos.sampler.rejection as rejection
from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
from jaxdos.pipeline import generate_crystals, sample_dos
from jaxdos.sampler.config import DOSSamplingConfig
from jaxdos.sampler.targets import Targets

# The module, not the function `jaxdos.crystal.generate` that the package re-exports over it.
crystal_generate = importlib.import_module("jaxdos.crystal.generate")


class _CompileLog(logging.Handler):
    """Collects JAX's `Compiling <fn> with global shapes and types ...` messages."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if msg.startswith("Compiling "):
            self.messages.append(msg)

    def count(self, name: str) -> int:
        return sum(m.startswith(f"Compiling jit({name}) ") for m in self.messages)


@contextlib.contextmanager
def compile_log():
    handler, logger = _CompileLog(), logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            yield handler
    finally:
        logger.removeHandler(handler)


def _signature(args) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return str(tree), tuple(str(jax.typeof(x)) for x in leaves)  # shape, dtype, weak type


class _Recorder:
    """Wraps a factory of jitted functions; records each function and its call signatures."""

    def __init__(self, factory):
        self.factory = factory
        self.calls: dict[int, tuple] = {}  # id(fn) -> (fn, [signature per call])

    def __call__(self, *args, **kwargs):
        fn = self.factory(*args, **kwargs)
        entry = self.calls.setdefault(id(fn), (fn, []))

        def recorded(*a):
            entry[1].append(_signature(a))
            return fn(*a)

        return recorded

    def check(self, log: _CompileLog, min_calls: int):
        total_calls = sum(len(sigs) for _, sigs in self.calls.values())
        assert total_calls >= min_calls, f"expected >= {min_calls} batches, ran {total_calls}"
        reused = False
        for fn, sigs in self.calls.values():
            assert fn._cache_size() == len(set(sigs)), (fn, fn._cache_size(), len(set(sigs)))
            reused |= len(sigs) > len(set(sigs))
        assert reused, "no shape bucket was run twice: the test would not see a recompile"
        for name in {fn.__name__ for fn, _ in self.calls.values()}:
            fns = [fn for fn, _ in self.calls.values() if fn.__name__ == name]
            compiled = sum(fn._cache_size() for fn in fns)
            assert log.count(name) == compiled, (name, log.count(name), compiled)
        return len(self.calls)


@pytest.fixture
def recorder(monkeypatch):
    def make(module, name):
        rec = _Recorder(getattr(module, name))
        monkeypatch.setattr(module, name, rec)
        return rec

    return make


def test_sample_dos_compiles_its_step_once(recorder, tmp_path):
    # Embedded DOSSampler, guided on one property with a wide band so most proposals pass, and a
    # chunk flushed every 4 accepted rows: 4 batches, several chunks, one bucket (batch 8).
    rec = recorder(rejection, "_make_step")
    targets = Targets.of(integrated_dos=2.0, tol=1.0)
    kw = dict(
        batch_size=8, sampling_config=DOSSamplingConfig.fast(steps=3), gamma=0.5, chunk_rows=4
    )
    with compile_log() as log:
        acc = sample_dos(targets, accept=32, proposals=32, out=tmp_path / "a", progress=False, **kw)
        # A second run with another seed reuses the compiled step (same shapes, same settings).
        sample_dos(
            targets, accept=16, proposals=16, seed=1, out=tmp_path / "b", progress=False, **kw
        )
    assert len(acc) > 0
    # One jitted step for both runs (the proposer's sample function is cached per setting).
    assert rec.check(log, min_calls=6) == 1


def test_generate_crystals_compiles_once_per_bucket(recorder):
    # One atom count, so every batch lands in the same atom bucket, and graph budgets at their
    # worst case (candidates for 3 atoms x 11^3 images at MatterGen's cap, 2 * max_neighbors
    # edges and in-degree, rounded to a power of two), so no batch overflows into a regrown
    # model: 3 batches, one compile.
    rec = recorder(crystal_generate, "make_sampler")
    model = untrained_model(32, [3])
    graph = dataclasses.replace(
        model.gemnet.graph, candidates_per_atom=4096, edges_per_atom=64, max_in_degree=64
    )
    model = dataclasses.replace(
        model,
        gemnet=dataclasses.replace(model.gemnet, graph=graph),
        num_atoms=NumAtomsDistribution.from_counts([3]),
    )
    with compile_log() as log:
        crystals, _ = generate_crystals(
            None, num_samples=12, batch_size=4, steps=2, corrector_steps=0, model=model
        )
    assert np.all(crystals.num_atoms == 3)
    assert rec.check(log, min_calls=3) == 1


@pytest.mark.slow  # two or three GemNet compilations: a few minutes on 2 busy cores
def test_overflowing_batches_rerun_alone_once_per_bucket(recorder, monkeypatch):
    # Budgets far too small and no presizing: every batch overflows, is re-run alone with grown
    # budgets, and the next batch starts again from the small ones. Each budget bucket compiles
    # once for the whole run, however many batches use it.
    import jaxdos.pipeline.crystals as crystals_mod

    monkeypatch.setattr(crystals_mod, "presize_budgets", lambda config, *a: config)
    rec = recorder(crystal_generate, "make_sampler")
    model = untrained_model(16, [3])
    graph = dataclasses.replace(model.gemnet.graph, edges_per_atom=2, max_in_degree=1)
    model = dataclasses.replace(
        model,
        gemnet=dataclasses.replace(model.gemnet, graph=graph),
        num_atoms=NumAtomsDistribution.from_counts([3]),
    )
    with compile_log() as log:
        crystals, _ = generate_crystals(
            None, num_samples=6, batch_size=2, steps=2, corrector_steps=0, model=model
        )
    assert np.all(crystals.num_atoms == 3)
    buckets = rec.check(log, min_calls=6)
    assert buckets >= 2
    calls = [len(sigs) for _, sigs in rec.calls.values()]
    assert calls[0] == 3  # every batch starts from the small budgets (the first bucket)
    assert sum(calls) >= 6  # and each was re-run with larger ones
