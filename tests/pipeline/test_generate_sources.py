"""`generate`'s DOS sources, read and checked before any compute: MP-style JSON (through the MP
loader), records, CIF files (DOS by the oracle), and the TE reference of `design`."""

import json

import numpy as np
from monty.json import MontyEncoder
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Spin
from pymatgen.electronic_structure.dos import CompleteDos, Dos

from jaxdos.data.mp import load_mp_dir
from jaxdos.data.records import save_records
from jaxdos.data.world import load_world
from jaxdos.pipeline.jobs.design import DesignConfig
from jaxdos.pipeline.jobs.generate import load_source
from jaxdos.pipeline.score import score
from jaxdos.structures import to_structures, write_cif


def write_mp_folder(folder):
    """Two MP-style CompleteDos files (a flat and a two-level DOS) and one unreadable file."""
    folder.mkdir()
    e = np.linspace(-12.0, 12.0, 481)
    for name, n, dens in [("mp-1", 1, np.full(e.shape, 2.0)), ("mp-2", 2, 1.0 + (e > 0))]:
        s = Structure(Lattice.cubic(3.6), ["Cu"] * n, np.random.default_rng(n).random((n, 3)))
        tdos = Dos(0.0, e, {Spin.up: dens})
        (folder / f"{name}.json").write_text(json.dumps(CompleteDos(s, tdos, {}), cls=MontyEncoder))
    (folder / "mp-3.json").write_text("{")


def test_mp_json_folder_is_resampled_by_the_mp_loader(tmp_path):
    write_mp_folder(tmp_path / "mp")
    dos, names, kind = load_source(tmp_path / "mp")
    records, _ = load_mp_dir(tmp_path / "mp", progress=False)
    assert kind == "dos_json" and names == ["mp-1", "mp-2"]
    np.testing.assert_array_equal(dos, records.dos)
    np.testing.assert_allclose(dos[0], 2.0, rtol=1e-5)  # 2 states/eV per 1-atom cell
    np.testing.assert_allclose(dos[1, :100], 0.5, rtol=1e-5)  # below E_F: 1 state/eV / 2 atoms


def test_records_and_cif_sources(tmp_path):
    world = load_world("test").take(np.arange(2))
    save_records(tmp_path / "r.npz", world, oracle_version="x")
    dos, names, kind = load_source(tmp_path / "r.npz")
    assert kind == "records" and names == [str(i) for i in world.ids]
    np.testing.assert_array_equal(dos, world.dos)

    (tmp_path / "cifs").mkdir()
    structures = to_structures(world.crystals)
    for i, s in enumerate(structures):
        write_cif(s, tmp_path / "cifs" / f"ref{i}.cif")
    dos, names, kind = load_source(tmp_path / "cifs")
    assert kind == "cif" and names == ["ref0", "ref1"]
    read = [Structure.from_file(str(tmp_path / "cifs" / f"ref{i}.cif")) for i in range(2)]
    # The world's DOS is the oracle's of its crystals; the CIFs keep them to their printed digits.
    np.testing.assert_allclose(dos, world.dos, rtol=1e-3, atol=1e-3)
    assert [len(s) for s in read] == list(world.num_atoms)


def test_te_reference_is_the_oracle_dos_of_the_cif(tmp_path):
    s = to_structures(load_world("test").take(np.arange(1)).crystals)[0]
    write_cif(s, tmp_path / "ref.cif")
    cfg = DesignConfig(filter="te", te_reference=str(tmp_path / "ref.cif"))
    te = cfg.targets().thermoelectric
    np.testing.assert_allclose(te.reference, score([s]).dos[0], rtol=1e-5, atol=1e-6)
