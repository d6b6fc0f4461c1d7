"""The README's "Your own data" walk, every line of it run at tiny size (issue 14 item 8).

The command lines are read from the README itself (so the two cannot drift apart) and run in a
temporary folder holding what the walk assumes: `mp_dos/` (MP-style files written with pymatgen)
and `mg/checkpoints/mattergen_base` (a seeded random MatterGen model, tiny, as the parity tests
build it). Tiny sizes are appended as flags (argparse keeps the last value), and the Python block
runs with fewer sampler steps.
"""

import re
import shlex
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "parity"))  # the seeded MatterGen builders
from parity_helpers import require_mattergen  # noqa: E402

require_mattergen()
from mg_reference import TINY, write_model_folder  # noqa: E402
from mp_files import write_mp_dir  # noqa: E402

from experiments.main import main as jaxdos  # noqa: E402
from jaxdos.crystal.checkpoint import CDOSGenModel  # noqa: E402
from jaxdos.pipeline.models import load  # noqa: E402

SMALL = dict(TINY, num_blocks=1, emb_size_atom=16, emb_size_edge=16, latent_dim=16, num_radial=16)
TINY_FLAGS = {
    "train-sampler": "--steps 2 --regressor-steps 2 --batch-size 4 --warmup 1 --eval-every 100",
    "train-crystal": "--steps 2 --atoms 40 --graphs 3",
    # a band-gap window every DOS meets, so a 2-step sampler still yields its 2 DOS quickly
    "design": "--band-gap 0:10 --crystals 2 --crystals-per-dos 1 --steps 3 --dos-steps 2 "
    "--proposals 16 --dos-batch 8",
}
PY_STEPS = ("STEPS, PER_DOS = 100, 4", "STEPS, PER_DOS = 3, 1")


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Your own data")
    return text[start : text.index("\n## ", start + 1)]


def walk() -> tuple[list[list[str]], str]:
    """(the README's `jaxdos` command lines as argv lists, its Python block)."""
    section = _section()
    bash = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    lines = [shlex.split(line) for line in bash.splitlines() if line.strip()]
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    return lines, python


def test_the_readme_walk_is_what_this_test_runs():
    lines, python = walk()
    assert [line[:2] for line in lines] == [
        ["jaxdos", "load-mp"],
        ["jaxdos", "train-sampler"],
        ["jaxdos", "convert-mattergen"],
        ["jaxdos", "train-crystal"],
        ["jaxdos", "design"],
    ]
    assert PY_STEPS[0] in python and "generate_crystals(" in python


@pytest.mark.slow  # ~4 min on 2 busy CPU cores (GemNet compiles for training and sampling)
def test_your_own_data_walk(tmp_path, monkeypatch, capsys):
    from pymatgen.core import Structure

    monkeypatch.chdir(tmp_path)
    write_mp_dir(tmp_path / "mp_dos", 12, seed=2)
    write_model_folder(tmp_path / "mg" / "checkpoints" / "mattergen_base", SMALL, seed=4)
    lines, python = walk()
    seconds = {}
    for argv in lines:
        name = argv[1]
        t0 = time.time()
        jaxdos(argv[1:] + shlex.split(TINY_FLAGS.get(name, "")))  # each output is checked below
        seconds[name] = round(time.time() - t0, 1)
    t0 = time.time()
    exec(compile(python.replace(*PY_STEPS), "README.md", "exec"), {})  # noqa: S102
    seconds["generate"] = round(time.time() - t0, 1)
    with capsys.disabled():
        print(f"\nwalk seconds: {seconds}")

    run = tmp_path / "runs" / "mine"
    assert (run / "mp.npz").is_file() and (run / "mattergen_base" / "model.json").is_file()
    sampler = load(run / "sampler" / "sampler")
    assert sampler.meta["data"]["oracle_version"] == "mp"
    crystal = load(run / "crystal" / "model")
    assert isinstance(crystal, CDOSGenModel) and crystal.gemnet.dos_dim == 256
    assert crystal.gemnet.emb_size_atom == SMALL["emb_size_atom"]  # the init's architecture
    assert crystal.meta["init"] == str((run / "mattergen_base").resolve())
    assert crystal.meta["mode"] == "FinetuneFull" and crystal.meta["steps"] == 2
    cifs = sorted((run / "crystals").glob("*.cif"))
    assert len(cifs) == 2 and (run / "crystals" / "crystals.extxyz").is_file()
    assert all(len(Structure.from_file(c)) >= 1 for c in cifs)
    designed = sorted((run / "design" / "structures").glob("*.cif"))
    assert len(designed) == 2 and (run / "design" / "crystals.csv").is_file()
    assert (run / "design" / "run.json").is_file()
