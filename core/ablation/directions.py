"""Which token explains each sentence, which concept(s) it carries, and the bases to remove.

Concepts are handled as integer ids into a table of direction vectors ([K, D]): a code vector or centroid
per concept for the vector methods, an encoder row per latent for the SAE. A sentence's ids are padded
with -1, so sentences with different numbers of directions share one [S, m] array.

Energy-matched control (`energy_matched_basis`). Removing an orthonormal basis Q from a sentence's vectors
H (its tokens at L_in, [T, D]) takes away the energy E(Q) = ||H Q||_F^2 = sum_t ||Q^T h_t||^2. Centroid-like
concept directions point where a sentence's states already are, so they carry far more energy than a
uniformly random direction: a concept-vs-random gap can then be an energy effect, not a concept effect.
The control therefore removes a subspace of the same rank r that takes away exactly the concept's energy:

    A = the sentence's top-r right singular vectors of H (the r-dim subspace of maximal energy; completed
        by random vectors orthogonal to H's rows when H has rank < r),
    R = a uniformly random orthonormal r-frame orthogonal to A (seeded),
    U = cos(t) A + sin(t) R,   cos^2(t) = (E(Q) - E(R)) / (E(A) - E(R)), clipped to [0, 1].

U is orthonormal (A and R are orthonormal and mutually orthogonal) and, because A's columns are eigenvectors
of H^T H, E(U) = cos^2(t) E(A) + sin^2(t) E(R) exactly, with no cross term. By Ky Fan's theorem
E(Q) <= E(A), so the match is exact. When the concept removes less than R does, U instead mixes R with a
random r-frame N of H's null space (orthogonal to A and R, energy 0): E(U) = cos^2(t) E(R), again exact
(unless the sentence's vectors have rank above D - 3r; the shortfall is reported as the `energy_match` of
summary.json). The only non-random ingredient is A, which depends on the sentence alone,
never on the method: the control asks "does an arbitrary subspace that removes as much of this sentence
as the concept does hurt as much?".
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


# --- removed energy and the energy-matched control --------------------------------------------------------


def pad_by_sentence(x: np.ndarray, sentence_of_row: np.ndarray, sentences: np.ndarray) -> torch.Tensor:
    """Rows `x` [N, D] grouped into one zero-padded block per sentence of `sentences`: [S, T_max, D].

    Rows keep their order within a sentence; rows of sentences not listed are dropped; a listed sentence
    without rows is all zeros (it has no energy to remove)."""
    x = np.asarray(x, dtype=np.float32)
    where = pd.Index(np.asarray(sentences)).get_indexer(np.asarray(sentence_of_row))
    keep = np.flatnonzero(where >= 0)
    where = where[keep]
    order = keep[np.argsort(where, kind="stable")]
    sent = np.sort(where, kind="stable")
    counts = np.bincount(sent, minlength=len(sentences))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(sent)) - starts[sent]
    out = np.zeros((len(sentences), max(1, int(counts.max(initial=0))), x.shape[1]), dtype=np.float32)
    out[sent, slot] = x[order]
    return torch.from_numpy(out)


def removed_energy(h: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Energy [S] that removing basis `q` [S, D, r] takes from each sentence's vectors `h` [S, T, D]:
    sum over tokens and columns of (h_t . q_j)^2 (zero padding rows and columns add nothing)."""
    return (torch.bmm(h.float(), q.float()) ** 2).sum(dim=(1, 2))


_LAST_SVD: list = []


def _row_space(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Singular values and right singular vectors of every sentence's vectors `h` [S, T, D].

    The model protocol asks for the same sentences' vectors once per concept source (every method and SAE
    variant): the last result is kept while the very same, unmodified tensor comes back, so the batched SVD
    (most of the control's cost) runs once per layer instead of once per source, with identical output.
    (Running it on one torch thread would be far faster still on a busy 2-core CPU, 0.7 s against 40-70 s,
    but LAPACK then rounds differently and the energy shares move in their 7th digit.)
    """
    if _LAST_SVD and _LAST_SVD[0] is h and _LAST_SVD[1] == h._version:
        return _LAST_SVD[2]
    _, sing, vh = torch.linalg.svd(h, full_matrices=False)
    _LAST_SVD[:] = [h, h._version, (sing, vh)]
    return _LAST_SVD[2]


def energy_matched_basis(h: torch.Tensor, target: torch.Tensor, rank: torch.Tensor | np.ndarray, width: int,
                         seed: int) -> torch.Tensor:
    """A random orthonormal basis [S, D, width] per sentence, with `rank[i]` non-zero columns, whose removal
    takes `target[i]` energy from sentence i's vectors `h` [S, T, D] (construction: module docstring)."""
    h = h.float()
    n, _, dim = h.shape
    rank = torch.as_tensor(np.asarray(rank), dtype=torch.long)
    if width == 0 or n == 0:
        return torch.zeros(n, dim, width)
    if 2 * width > dim:
        raise ValueError(f"an energy-matched basis of width {width} needs at least {2 * width} dimensions, not {dim}")
    sing, vh = _row_space(h)  # rows sorted by singular value, largest first
    top = vh[:, : min(width, vh.shape[1])].transpose(1, 2)
    generator = torch.Generator().manual_seed(int(seed))
    gauss = torch.randn(n, dim, 2 * width - top.shape[2], generator=generator)
    # QR keeps the orthonormal leading columns (up to sign) and completes them with random orthogonal ones.
    frame, _ = torch.linalg.qr(torch.cat([top, gauss], dim=2))
    columns = (torch.arange(width)[None, :] < rank[:, None]).float()[:, None, :]
    anchor, rand = frame[..., :width] * columns, frame[..., width : 2 * width] * columns
    high, low = removed_energy(h, anchor), removed_energy(h, rand)
    target = target.float()
    span = high - low
    share = torch.where(span > 1e-12 * high.clamp_min(1e-30), (target - low) / span.clamp_min(1e-30),
                        torch.zeros_like(span)).clamp(0.0, 1.0)
    out = share.sqrt()[:, None, None] * anchor + (1.0 - share).sqrt()[:, None, None] * rand
    below = target < low
    rows = min(vh.shape[1], dim - 3 * width)
    if below.any() and rows >= 0:
        # Less energy than a random subspace: tilt R towards random directions of H's null space instead.
        # The row space is spanned by the right singular vectors with non-zero singular values; a sentence
        # of rank above `rows` keeps some energy in N, which the reported match ratio shows.
        real = (sing[:, :rows] > 1e-6 * sing[:, :1].clamp_min(1e-30)).float()[:, None, :]
        extra = torch.randn(n, dim, width, generator=generator)
        stacked = torch.cat([vh[:, :rows].transpose(1, 2) * real, frame[..., : 2 * width], extra], dim=2)
        full, _ = torch.linalg.qr(stacked)
        null = full[..., rows + 2 * width :] * columns
        keep = (target / low.clamp_min(1e-30)).clamp(0.0, 1.0)
        low_mix = keep.sqrt()[:, None, None] * rand + (1.0 - keep).sqrt()[:, None, None] * null
        out = torch.where(below[:, None, None], low_mix, out)
    return out
