"""Which token explains each sentence, which concept(s) it carries, and the bases to remove.

Concepts are handled as integer ids into a table of direction vectors ([K, D]): a code vector or centroid
per concept for the vector methods, an encoder row per latent for the SAE. A sentence's ids are padded
with -1, so sentences with different numbers of directions share one [S, m] array.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

# Relative threshold below which a basis column counts as linearly dependent on earlier ones.
RANK_TOL = 1e-5


def sentence_ids(explanations: pd.DataFrame, token_ids: np.ndarray, sentences: np.ndarray, top_k: int) -> np.ndarray:
    """Concept ids per sentence [S, top_k * m] from ids per explanation row `token_ids` [len(explanations), m].

    Rows follow `sentences`; a sentence without an explanation gets only -1. Repeated ids within a
    sentence (two top words in one concept) are kept once; padding goes last.
    """
    token_ids = np.asarray(token_ids, dtype=np.int64).reshape(len(explanations), -1)
    m = token_ids.shape[1]
    out = np.full((len(sentences), top_k, m), -1, dtype=np.int64)
    where = pd.Index(np.asarray(sentences)).get_indexer(explanations["sentence"].to_numpy())
    keep = where >= 0
    out[where[keep], explanations["rank"].to_numpy()[keep]] = token_ids[keep]
    return unique_ids(out.reshape(len(sentences), top_k * m))


def unique_ids(ids: np.ndarray) -> np.ndarray:
    """Drop repeated ids per row (set to -1) and move the -1 padding to the end of each row."""
    ids = np.sort(np.asarray(ids, dtype=np.int64), axis=1)
    repeat = np.zeros_like(ids, dtype=bool)
    repeat[:, 1:] = ids[:, 1:] == ids[:, :-1]
    ids = np.where(repeat, -1, ids)
    order = np.argsort(ids < 0, axis=1, kind="stable")
    return np.take_along_axis(ids, order, axis=1)


def orthonormal_basis(vectors: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Orthonormal basis [S, D, m] of the span of each row's vectors `vectors` [S, m, D].

    QR of the stacked vectors; columns beyond a row's rank (invalid, zero or dependent vectors) are zero,
    so `remove_span` removes exactly that span. Rows with dependent vectors fall back to an SVD, because
    QR cannot tell which of its columns the span still needs once a diagonal entry of R vanishes.
    """
    vectors = vectors.float()
    if valid is None:
        valid = vectors.norm(dim=-1) > 0
    # QR is only exact when the padding columns come last.
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    valid = valid.gather(1, order)
    a = (vectors.gather(1, order[..., None].expand_as(vectors)) * valid[..., None]).transpose(1, 2)
    q, r = torch.linalg.qr(a)
    diag = r.diagonal(dim1=-2, dim2=-1).abs()
    scale = a.norm(dim=1).amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    independent = diag > RANK_TOL * scale
    q = q * independent[:, None, :]
    deficient = (valid & ~independent).any(dim=1)
    if deficient.any():
        u, s, _ = torch.linalg.svd(a[deficient], full_matrices=False)
        keep = s > RANK_TOL * s[:, :1].clamp_min(torch.finfo(torch.float32).tiny)
        q[deficient] = u * keep[:, None, :]
    return q


def basis_from_ids(table: torch.Tensor | np.ndarray, ids: np.ndarray) -> torch.Tensor:
    """Orthonormal basis [S, D, m] of the concept directions `table[ids]`; -1 ids add nothing."""
    table = torch.as_tensor(table, dtype=torch.float32)
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    valid = ids_t >= 0
    vectors = table[ids_t.clamp_min(0)] * valid[..., None]
    return orthonormal_basis(vectors, valid & (vectors.norm(dim=-1) > 0))


def ranks(basis: torch.Tensor) -> torch.Tensor:
    """Number of non-zero columns per row of a padded basis [S, D, m]."""
    return (basis.norm(dim=1) > 0.5).sum(dim=1)


def random_basis(rank: torch.Tensor | np.ndarray, dim: int, width: int, seed: int) -> torch.Tensor:
    """A uniformly random orthonormal basis [S, D, width] per row with `rank[i]` non-zero columns.

    The control for a concept basis: the same number of unit directions per sentence, drawn from a seeded
    generator (QR of a Gaussian matrix gives a uniformly distributed subspace).
    """
    rank = torch.as_tensor(np.asarray(rank), dtype=torch.long)
    generator = torch.Generator().manual_seed(int(seed))
    gauss = torch.randn(len(rank), dim, width, generator=generator)
    q, _ = torch.linalg.qr(gauss)
    return q * (torch.arange(width)[None, :] < rank[:, None])[:, None, :]


def random_ids(ids: np.ndarray, n_concepts: int, seed: int, tries: int = 20) -> np.ndarray:
    """Other concepts for each sentence: distinct uniform ids in [0, n_concepts) at the same non-padding
    slots, avoiding the sentence's own ids (when there are enough concepts to avoid them)."""
    ids = np.asarray(ids, dtype=np.int64)
    rng = np.random.default_rng(seed)
    slots = ids >= 0
    out = np.where(slots, rng.integers(0, n_concepts, size=ids.shape), -1)
    if n_concepts > ids.shape[1]:
        for _ in range(tries):
            own = (out[:, :, None] == np.where(slots, ids, -2)[:, None, :]).any(-1)
            earlier = np.tril(out[:, :, None] == out[:, None, :], k=-1).any(-1)
            clash = slots & (own | earlier)
            if not clash.any():
                break
            out[clash] = rng.integers(0, n_concepts, size=int(clash.sum()))
    return unique_ids(out)
