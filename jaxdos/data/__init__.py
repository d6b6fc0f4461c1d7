"""Data: crystal prototypes, the offline world, MP-style loaders, grain pipelines."""

from jaxdos.data.records import MAX_ATOMS, Records, load_records, save_records

__all__ = ["MAX_ATOMS", "Records", "load_records", "save_records"]
