"""Brute-force numpy periodic neighbour search (independent of jaxdos.crystal.graph)."""

import itertools

import numpy as np


def brute_force_edges(frac_list, lattice_list, cutoff, max_neighbors, cap):
    """Directed edges (g, s_local, t_local, n) after MatterGen's kNN cut and symmetrisation.

    Returns:
        (sorted list of (g, s, t, n0, n1, n2) tuples, dict of (g, s, t, n) -> distance, per-crystal
         sorted kNN distances per centre (to check for ties at the cut)).
    """
    reps = []
    for lat in lattice_list:
        lat = np.asarray(lat, np.float64)
        vol = np.dot(lat[0], np.cross(lat[1], lat[2]))
        r = []
        for d in range(3):
            c = np.cross(lat[(d + 1) % 3], lat[(d + 2) % 3])
            r.append(int(np.ceil(cutoff * np.linalg.norm(c / vol))))
        reps.append(r)
    rep = [min(max(r[d] for r in reps), cap) for d in range(3)]
    imgs = list(itertools.product(*[range(-r, r + 1) for r in rep]))
    edges, dists, gaps = [], {}, []
    for g, (frac, lat) in enumerate(zip(frac_list, lattice_list, strict=True)):
        lat = np.asarray(lat, np.float64)
        cart = np.asarray(frac, np.float64) @ lat
        na = len(cart)
        for i in range(na):
            cands = []
            for j in range(na):
                for n in imgs:
                    d2 = np.sum((cart[i] - cart[j] - np.array(n) @ lat) ** 2)
                    if 1e-4 < d2 <= cutoff**2:
                        cands.append((d2, j, n))
            cands.sort(key=lambda c: c[0])
            if len(cands) > max_neighbors:
                gaps.append(cands[max_neighbors][0] - cands[max_neighbors - 1][0])
            for d2, j, n in cands[:max_neighbors]:
                if j < i or (j == i and tuple(n) < (0, 0, 0)):
                    for s, t, m in ((j, i, n), (i, j, tuple(-x for x in n))):
                        edges.append((g, s, t) + tuple(m))
                        dists[(g, s, t) + tuple(m)] = np.sqrt(d2)
    return sorted(edges), dists, gaps


def images_per_axis(lattice, cutoff, cap):
    """MatterGen's images per lattice direction k of one cell: min(ceil(cutoff / h_k), cap), h_k
    the spacing of the lattice planes, V / |a_i x a_j|."""
    lat = np.asarray(lattice, np.float64)
    vol = abs(np.dot(lat[0], np.cross(lat[1], lat[2])))
    areas = [np.linalg.norm(np.cross(lat[(d + 1) % 3], lat[(d + 2) % 3])) for d in range(3)]
    return [min(cap, int(np.ceil(cutoff * a / vol))) for a in areas]


def candidates_needed(lattice_list, num_atoms, cutoff, cap):
    """max over crystals of n * prod(2 r + 1): the graph's `GraphStats.candidates_needed`."""
    return max(
        int(n) * int(np.prod([2 * r + 1 for r in images_per_axis(lat, cutoff, cap)]))
        for lat, n in zip(lattice_list, num_atoms, strict=True)
    )


def pad_batch(frac_list, lattice_list, z_list, num_nodes, num_graphs):
    """A padded CrystalBatch (numpy -> jnp) from per-crystal arrays; padding at the end."""
    import jax.numpy as jnp

    from jaxdos.structures import CrystalBatch

    z = np.zeros(num_nodes, np.int32)
    frac = np.zeros((num_nodes, 3), np.float32)
    lat = np.tile(np.eye(3, dtype=np.float32), (num_graphs, 1, 1))
    nat = np.zeros(num_graphs, np.int32)
    bidx = np.full(num_nodes, num_graphs - 1, np.int32)
    nmask = np.zeros(num_nodes, bool)
    gmask = np.zeros(num_graphs, bool)
    p = 0
    for g, (f, l, zz) in enumerate(zip(frac_list, lattice_list, z_list, strict=True)):
        k = len(f)
        z[p : p + k] = zz
        frac[p : p + k] = np.asarray(f) % 1.0
        lat[g] = l
        nat[g] = k
        bidx[p : p + k] = g
        nmask[p : p + k] = True
        gmask[g] = True
        p += k
    return CrystalBatch(
        atomic_numbers=jnp.asarray(z),
        frac_coords=jnp.asarray(frac),
        lattice=jnp.asarray(lat),
        num_atoms=jnp.asarray(nat),
        batch=jnp.asarray(bidx),
        node_mask=jnp.asarray(nmask),
        graph_mask=jnp.asarray(gmask),
    )


def random_crystal(rng, n_atoms, scale=4.0, skew=0.3):
    """Random fractional coordinates `[n, 3]` and a random (possibly skewed) lattice `[3, 3]`."""
    lat = scale * (np.eye(3) + skew * rng.uniform(-1, 1, (3, 3)))
    if np.linalg.det(lat) < 0:
        lat[0] *= -1
    return rng.uniform(0, 1, (n_atoms, 3)), lat
