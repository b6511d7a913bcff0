"""DynInt (Yan & Li, DLP-KDD 2022) over the EBF example: xDeepInt's PIN and its three dynamic variants.

Shapes: B examples, F = len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS) fields (+ len(MATCH_COLUMNS) with
``model.target_match``, + len(ID_MATCH_COLUMNS) with ``model.id_match``, + len(LENGTH_COLUMNS) with
``model.length_fields``, + ``model.bias_fields`` with
``model.bias_field``), D = ``embed_dim``, h ``subspaces``, R = h * F interaction rows of width d = D / h (subspace
crossing, below), K = ``rank``.

- :class:`FieldEmbedding`: a :class:`~training.batch.Batch` -> X_0 [B, F, D] (eq. 1). One table per field;
  a sequence field is its attribute's embeddings pooled over the valid positions. A sequence column the
  batch does not carry is a zero field, never looked up, and at inference its rows are skipped by the
  interaction layers too (exact: :meth:`DynIntModel.forward`), so a removed attribute saves FLOPs.
- Subspace crossing (xDeepInt): X_0 [B, F, D] is cut into h column blocks of width d that are stacked as
  rows, giving [B, R, d]; an R x R interaction matrix then mixes fields (vector-wise) and sub-spaces of the
  embedding (bit-wise). h = 1 is purely vector-wise.
- PIN layers (eq. 3 and the variants' eqs. 4-10) and the output layer (eq. 2).

The dynamic parts (DA's gate, DGP's Sigma, DWP's pairs) read a gradient-blocked X_0: the embeddings learn
only through the interaction path (section 3.2). DGP and DWP follow section 3.5's low-rank paradigm: no
[B, R, R] tensor is built.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynamix_spark.config import ModelConfig
from schemas.ebf import ALL_SEQ_COLUMNS, EBF_SOURCES, TARGET_COLUMNS, seq_col, tgt_col
from training.batch import Batch

FIELD_COLUMNS: tuple[str, ...] = TARGET_COLUMNS + ALL_SEQ_COLUMNS
SEQ_SOURCE: dict[str, str] = {seq_col(s, a): s for s, attrs in EBF_SOURCES.items() for a in attrs}
# Target-aware match fields (``model.target_match``): per source with a ``category_id`` sequence, how many of its
# events are of the target ad's category, bucketed and embedded (a field of its own, after the others). The
# sequences and the target use one encoding of category_id (schemas/ebf.py), so a match is id equality.
MATCH_ATTRIBUTE = "category_id"
MATCH_SOURCES: tuple[str, ...] = tuple(s for s, attrs in EBF_SOURCES.items() if MATCH_ATTRIBUTE in attrs)
MATCH_COLUMNS: tuple[str, ...] = tuple(f"{s}_match_{MATCH_ATTRIBUTE}" for s in MATCH_SOURCES)
# Target-aware id match fields (``model.id_match``): the same count for the ad source's id attributes, how many of
# the ad history's events show the target ad itself, its campaign, its advertiser or its content (semantic ids):
# the re-exposure signal (docs/PLANTED_MECHANISM.md). Targets and sequences hash an attribute alike (schemas/ebf.py).
ID_MATCH_ATTRIBUTES: tuple[str, ...] = ("ad_id", "campaign_id", "advertiser_id", "semantic_ids")
ID_MATCH_COLUMNS: tuple[str, ...] = tuple(f"ad_match_{a}" for a in ID_MATCH_ATTRIBUTES)
# every match field: (field, source, attribute), counting the source's sequence of the attribute against the target's
_MATCHES = ([(m, s, MATCH_ATTRIBUTE) for m, s in zip(MATCH_COLUMNS, MATCH_SOURCES)]
            + [(m, "ad", a) for m, a in zip(ID_MATCH_COLUMNS, ID_MATCH_ATTRIBUTES)])
MATCH_SEQ: dict[str, str] = {m: seq_col(s, a) for m, s, a in _MATCHES}  # match field -> the sequence it counts in
MATCH_TARGET: dict[str, str] = {m: tgt_col(a) for m, _s, a in _MATCHES}  # match field -> the target it counts
MATCH_BUCKETS = 8  # 0 matches, then 1, 2-3, 4-7, ..., >= 64
# Length fields (``model.length_fields``): per source, its sequence's length (events before padding), bucketed the
# same way and embedded: how much history there is, as an input of its own rather than something the model
# reads off the norm of mean-pooled embeddings (which needs every attribute: removing some then costs NE).
LENGTH_COLUMNS: tuple[str, ...] = tuple(f"{s}_length" for s in EBF_SOURCES)
LENGTH_SOURCE: dict[str, str] = dict(zip(LENGTH_COLUMNS, EBF_SOURCES))
LENGTH_BUCKETS = 8
# The constant field (``model.bias_field``): the last field of X_0, one learned vector in every example.
BIAS_COLUMN = "bias"
VARIANTS: tuple[str, ...] = ("xdeepint", "da", "dgp", "dwp")
EMBED_INIT_STD = 0.01
# DWP generator's last layer starts near (not at) zero: identical pairs would get identical gradients
# forever, so the K rank-1 terms could never differ. At init G(x) is within about 1% of 1.
DWP_GENERATOR_INIT_STD = 0.01


def bias_columns(n: int) -> tuple[str, ...]:
    """The names of ``model.bias_fields`` = n constant fields: BIAS_COLUMN, then bias_2 ... bias_n."""
    return tuple(BIAS_COLUMN if k == 1 else f"{BIAS_COLUMN}_{k}" for k in range(1, n + 1))


class FieldEmbedding(nn.Module):
    """Batch -> X_0 [B, F, D] in :data:`FIELD_COLUMNS` order (eq. 1), then, with ``target_match``, one field per
    :data:`MATCH_COLUMNS`: the embedding (a table of MATCH_BUCKETS rows) of :func:`match_bucket` of the source's
    category_id sequence against the target's; a zero field when the batch lacks that sequence. Then, with
    ``id_match``, the same for the ad source's :data:`ID_MATCH_ATTRIBUTES` (:data:`ID_MATCH_COLUMNS`). Then, with
    ``length_fields``, one field per source: the embedding of its length's bucket (:func:`count_bucket`), a zero
    field when the batch carries no column of the source.

    Ids are taken mod ``hash_buckets``. A sequence field pools its [B, N, D] embeddings over positions
    < the source's length: ``mean``, or ``attention`` with one learned query per field (zero at init, so
    attention starts as the mean). A length-0 sequence pools to zeros. Absent sequence columns are zero
    rows, and their tables are not called: that is the compute a removed attribute saves.
    """

    def __init__(self, embed_dim: int, hash_buckets: int, pooling: str = "mean", target_match: bool = False,
                 length_fields: bool = False, bias_field: bool = False, bias_fields: int = 1,
                 id_match: bool = False) -> None:
        super().__init__()
        if pooling not in ("mean", "attention"):
            raise ValueError(f"pooling must be 'mean' or 'attention', not {pooling!r}")
        self.embed_dim, self.hash_buckets, self.pooling = embed_dim, hash_buckets, pooling
        self.target_match, self.length_fields, self.id_match = target_match, length_fields, id_match
        # The fields of X_0, in order: FIELD_COLUMNS, then (target_match) MATCH_COLUMNS, then (id_match)
        # ID_MATCH_COLUMNS, then (length_fields) LENGTH_COLUMNS, then (bias_field) bias_columns(bias_fields).
        self.field_columns: tuple[str, ...] = (FIELD_COLUMNS + (MATCH_COLUMNS if target_match else ())
                                               + (ID_MATCH_COLUMNS if id_match else ())
                                               + (LENGTH_COLUMNS if length_fields else ())
                                               + (bias_columns(bias_fields) if bias_field else ()))
        # constant field -> its index: 0 is ``bias``, k > 0 row k - 1 of ``more_biases``
        self.bias_columns = {c: k for k, c in enumerate(bias_columns(bias_fields) if bias_field else ())}
        # std 1 / sqrt(D): a unit-norm vector at init, so the constant terms start at the scale of W's entries
        self.bias = nn.Parameter(torch.randn(embed_dim) / math.sqrt(embed_dim)) if bias_field else None
        # ``model.bias_fields`` > 1: the further constant fields, one row each
        self.more_biases = (nn.Parameter(torch.randn(bias_fields - 1, embed_dim) / math.sqrt(embed_dim))
                            if bias_field and bias_fields > 1 else None)
        self.tables = nn.ModuleDict({c: nn.Embedding(hash_buckets, embed_dim) for c in FIELD_COLUMNS})
        if target_match:
            self.tables.update({c: nn.Embedding(MATCH_BUCKETS, embed_dim) for c in MATCH_COLUMNS})
        if id_match:
            self.tables.update({c: nn.Embedding(MATCH_BUCKETS, embed_dim) for c in ID_MATCH_COLUMNS})
        if length_fields:
            self.tables.update({c: nn.Embedding(LENGTH_BUCKETS, embed_dim) for c in LENGTH_COLUMNS})
        for t in self.tables.values():
            nn.init.normal_(t.weight, std=EMBED_INIT_STD)
        self.queries = (nn.ParameterDict({c: nn.Parameter(torch.zeros(embed_dim)) for c in ALL_SEQ_COLUMNS})
                        if pooling == "attention" else None)
        # Set ``track_l2`` to keep, per forward, the batch mean of the summed squares of the looked-up rows
        # (targets, and sequence positions < length): the per-row L2 of ``model.embed_l2``.
        self.track_l2 = False
        self.last_l2: Tensor | None = None

    @property
    def num_fields(self) -> int:
        return len(self.field_columns)

    def present_fields(self, batch: Batch) -> list[int]:
        """Indices of the fields ``batch`` carries (a match field is present with its source's category_id, a
        length field with any column of its source, the constant field always)."""
        return [i for i, c in enumerate(self.field_columns)
                if c in batch.targets or c in batch.seqs or c in self.bias_columns or self._carries(c, batch)]

    @staticmethod
    def _carries(col: str, batch: Batch) -> bool:
        """Whether ``batch`` carries what match or length field ``col`` is computed from."""
        return MATCH_SEQ.get(col) in batch.seqs or LENGTH_SOURCE.get(col) in batch.lengths

    def _bucket(self, col: str, batch: Batch) -> Tensor:
        """The bucket ids [B] of match or length field ``col`` (which ``batch`` carries)."""
        if col in MATCH_SEQ:
            seq = MATCH_SEQ[col]
            return match_bucket(batch.seqs[seq], batch.targets[MATCH_TARGET[col]], batch.lengths[SEQ_SOURCE[seq]])
        return count_bucket(batch.lengths[LENGTH_SOURCE[col]], LENGTH_BUCKETS)

    def extra_lookups(self, batch: Batch) -> int:
        """Lookups per example of the present match and length fields (one each)."""
        return sum(1 for i in self.present_fields(batch) if self.field_columns[i] not in batch.targets
                   and self.field_columns[i] not in batch.seqs and self.field_columns[i] not in self.bias_columns)

    def forward(self, batch: Batch) -> Tensor:
        """Returns X_0 [B, F, D]."""
        unknown = set(batch.seqs) - set(ALL_SEQ_COLUMNS)
        if unknown:
            raise ValueError(f"batch has unknown sequence columns: {sorted(unknown)}")
        b = len(batch)
        zeros = None

        def zero_field(col: str) -> Tensor:  # one [B, D] zero tensor shared by every absent field
            nonlocal zeros
            if zeros is None:
                w = self.tables[col].weight
                zeros = torch.zeros(b, self.embed_dim, device=w.device, dtype=w.dtype)
            return zeros

        rows: list[Tensor] = []
        squares: list[Tensor] = []  # summed squares of the looked-up rows, per field (track_l2 only)
        for c in TARGET_COLUMNS:
            rows.append(self.tables[c](batch.targets[c] % self.hash_buckets))
            if self.track_l2:
                squares.append(rows[-1].float().pow(2).sum())
        for c in ALL_SEQ_COLUMNS:
            ids = batch.seqs.get(c)
            if ids is None:
                rows.append(zero_field(c))
                continue
            emb = self.tables[c](ids % self.hash_buckets)
            lengths = batch.lengths[SEQ_SOURCE[c]]
            rows.append(self._pool(c, emb, lengths))
            if self.track_l2:
                valid = torch.arange(emb.shape[1], device=emb.device)[None, :] < lengths[:, None]
                squares.append((emb.float().pow(2).sum(-1) * valid).sum())
        for c in self.field_columns[len(FIELD_COLUMNS):]:  # the match, length and bias fields, if configured
            if c in self.bias_columns:
                k = self.bias_columns[c]
                rows.append((self.bias if k == 0 else self.more_biases[k - 1])[None, :].expand(b, -1))
                continue
            if not self._carries(c, batch):  # the source (or its category_id) is not given to this segment
                rows.append(zero_field(c))
                continue
            rows.append(self.tables[c](self._bucket(c, batch)))
            if self.track_l2:
                squares.append(rows[-1].float().pow(2).sum())
        self.last_l2 = torch.stack(squares).sum() / max(b, 1) if squares else None
        return torch.stack(rows, dim=1)

    def _pool(self, col: str, emb: Tensor, lengths: Tensor) -> Tensor:
        """emb [B, N, D], lengths [B] -> [B, D]."""
        n = emb.shape[1]
        mask = torch.arange(n, device=emb.device)[None, :] < lengths[:, None]  # [B, N]
        if self.queries is None:
            count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(emb.dtype)
            return (emb * mask[..., None].to(emb.dtype)).sum(dim=1) / count
        scores = (emb @ self.queries[col].to(emb.dtype)) / math.sqrt(self.embed_dim)  # [B, N]
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        # An all-padding row gets uniform weights from softmax; the mask then zeroes them.
        weights = torch.softmax(scores, dim=1) * mask.to(scores.dtype)
        return (weights[..., None] * emb).sum(dim=1)


def count_bucket(count: Tensor, buckets: int) -> Tensor:
    """[B] counts >= 0 -> [B] buckets: 0 for 0, else 1 + min(buckets - 2, floor(log2 c))."""
    # floor(log2 c) by integer comparison (exact): the number of powers of two 2, 4, ... that are <= c.
    powers = 2 ** torch.arange(1, buckets - 1, device=count.device)
    log2 = (count[:, None] >= powers[None, :]).sum(dim=1)
    return torch.where(count > 0, 1 + log2, torch.zeros_like(count))


def match_bucket(ids: Tensor, target: Tensor, lengths: Tensor) -> Tensor:
    """ids [B, N] (a sequence's hashed ids), target [B] (the target's id of the same attribute), lengths [B] ->
    [B] bucket of the count c of valid positions equal to the target: 0 for c = 0, else
    1 + min(MATCH_BUCKETS - 2, floor(log2 c)). Padding (0) and null targets (0) never match."""
    valid = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
    count = ((ids == target[:, None]) & valid & (target[:, None] != 0)).sum(dim=1)
    return count_bucket(count, MATCH_BUCKETS)


def split_subspaces(x: Tensor, h: int) -> Tensor:
    """Subspace crossing: [B, F, D] -> [B, h * F, D / h]; row s * F + f is field f's s-th block."""
    b, f, dim = x.shape
    return x.reshape(b, f, h, dim // h).transpose(1, 2).reshape(b, h * f, dim // h)


def orthogonal_penalty(vectors: Tensor) -> Tensor:
    """Eqs. 11-12's inner sum: sum over p > q of |cos(vectors_p, vectors_q)|.

    vectors [..., K, n] -> [...]. 0 when the K vectors are mutually orthogonal; computed in float32.
    """
    with torch.autocast(device_type=vectors.device.type, enabled=False):  # bf16 cosines would be coarse
        v = vectors.float()
        unit = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        cos = unit @ unit.transpose(-1, -2)  # [..., K, K]
    k = cos.shape[-1]
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=cos.device), diagonal=1)
    return (cos.abs() * upper).sum(dim=(-1, -2))


def _generator(in_dim: int, out_dim: int, reduction: int) -> nn.Sequential:
    """The papers' two-layer DNN with reduction ratio r: in -> in / r (ReLU) -> out."""
    hidden = max(1, in_dim // reduction)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


def _generate(net: nn.Sequential, x0: Tensor, rows: Tensor | None, outputs: Tensor | None = None) -> Tensor:
    """``net`` on the gradient-blocked, flattened X_0. With ``rows`` (X_0 holds only those rows of the full
    [R, d]; the others are zero fields), the first layer keeps only its input columns of those rows, which is
    exact since the dropped inputs are 0, and the last layer computes only its ``outputs`` (indices)."""
    flat = x0.detach().flatten(1)
    if rows is None:
        return net(flat)
    first, act, last = net
    d = x0.shape[-1]
    cols = (rows[:, None] * d + torch.arange(d, device=rows.device)).flatten()
    hidden = act(F.linear(flat, first.weight[:, cols].to(flat.dtype), first.bias.to(flat.dtype)))
    if outputs is None:
        return last(hidden)
    return F.linear(hidden, last.weight[outputs].to(hidden.dtype), last.bias[outputs].to(hidden.dtype))


def _row_bias(rows: int, width: int) -> nn.Parameter | None:
    """``model.row_bias``: a learned [R, d] term added to a layer's interaction (W X_0 + B), zero at init (the
    layer then equals the papers'); None when ``width`` is 0."""
    return nn.Parameter(torch.zeros(rows, width)) if width > 0 else None


def _affine(interaction: Tensor, bias: Tensor | None, rows: Tensor | None) -> Tensor:
    """interaction [B, R, d] + the row bias (its ``rows`` only, when given)."""
    if bias is None:
        return interaction
    return interaction + (bias if rows is None else bias[rows]).to(interaction.dtype)


class PINLayer(nn.Module):
    """xDeepInt's PIN layer, eq. 3: X_l = X_{l-1} o (W X_0) + X_{l-1}, W static [R, R].

    forward(x [B, R, d], x0 [B, R, d]) -> (X_l [B, R, d], orthogonal penalty: scalar tensor or None).

    Every layer's ``forward`` also takes ``rows`` (indices into the R rows, or None for all): x and x0 then
    hold only those rows, and the layer computes only with its parameters' matching rows and columns. When
    the other rows of X_0 are zero (fields a batch does not carry), this is exact: a zero row of X_0 stays a
    zero row of every X_l and adds nothing to the others (:meth:`DynIntModel.forward` at inference).
    """

    def __init__(self, rows: int, bias_width: int = 0, **_: object) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(rows, rows) / math.sqrt(rows))
        self.row_bias = _row_bias(rows, bias_width)

    def _w(self, rows: Tensor | None) -> Tensor:
        return self.weight if rows is None else self.weight[rows][:, rows]

    def interaction(self, x0: Tensor, rows: Tensor | None = None) -> Tensor:
        """W X_0: [B, R, d]."""
        return torch.matmul(self._w(rows).to(x0.dtype), x0)

    def forward(self, x: Tensor, x0: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        return x * _affine(self.interaction(x0, rows), self.row_bias, rows) + x, None


class DynamicActivationPIN(PINLayer):
    """DynInt-DA, eq. 4: X_l = (X_{l-1} o (W X_0)) o G(x) + X_{l-1}.

    G(x) [B, R] (one gate per row, broadcast over d) = 2 sigmoid(DNN(stop_grad(X_0))); the DNN's last layer
    starts at zero, so G = 1 and the layer equals eq. 3 at init.
    """

    def __init__(self, rows: int, in_dim: int, reduction: int, bias_width: int = 0, **_: object) -> None:
        super().__init__(rows, bias_width)
        self.gate_net = _generator(in_dim, rows, reduction)
        nn.init.zeros_(self.gate_net[-1].weight)
        nn.init.zeros_(self.gate_net[-1].bias)

    def gate(self, x0: Tensor, rows: Tensor | None = None) -> Tensor:
        """[B, R, d] -> G [B, R]; no gradient flows back into x0."""
        return 2.0 * torch.sigmoid(_generate(self.gate_net, x0, rows, rows))

    def forward(self, x: Tensor, x0: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        return x * _affine(self.interaction(x0, rows), self.row_bias, rows) * self.gate(x0, rows)[..., None] + x, None


class DynamicGeneratedPIN(nn.Module):
    """DynInt-DGP, eqs. 5, 7-8: W(x) = U Sigma(x) V^T, so W(x) X_0 = U (Sigma(x) (V^T X_0)).

    U, V static [R, K]; Sigma(x) diagonal [B, K] = 1 + DNN(stop_grad(X_0)), last layer zero at init (so
    W(x) = U V^T then). Cost B K d + 2 R K instead of B R R (section 3.5.1). The penalty is eq. 11's
    (static columns of U and V; the per-instance scale sqrt(sigma) does not change a cosine's magnitude).
    """

    def __init__(self, rows: int, in_dim: int, reduction: int, rank: int, bias_width: int = 0, **_: object) -> None:
        super().__init__()
        self.row_bias = _row_bias(rows, bias_width)
        std = (rows * rank) ** -0.25  # var(U V^T)_ij = K std^4 = 1 / R, like the static W
        self.u = nn.Parameter(torch.randn(rows, rank) * std)
        self.v = nn.Parameter(torch.randn(rows, rank) * std)
        self.sigma_net = _generator(in_dim, rank, reduction)
        nn.init.zeros_(self.sigma_net[-1].weight)
        nn.init.zeros_(self.sigma_net[-1].bias)

    def sigma(self, x0: Tensor, rows: Tensor | None = None) -> Tensor:
        """[B, R, d] -> diagonal of Sigma(x) [B, K]; no gradient flows back into x0."""
        return 1.0 + _generate(self.sigma_net, x0, rows)

    def interaction(self, x0: Tensor, rows: Tensor | None = None) -> Tensor:
        """U Sigma(x) V^T X_0 [B, R, d] (eq. 8), contracted right to left."""
        u, v = (self.u, self.v) if rows is None else (self.u[rows], self.v[rows])
        vt_x0 = torch.matmul(v.t().to(x0.dtype), x0)  # [B, K, d]
        return torch.matmul(u.to(x0.dtype), self.sigma(x0, rows).to(x0.dtype)[..., None] * vt_x0)

    def forward(self, x: Tensor, x0: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        penalty = orthogonal_penalty(self.u.t()) + orthogonal_penalty(self.v.t())
        return x * _affine(self.interaction(x0, rows), self.row_bias, rows) + x, penalty


class DynamicWeightedPIN(PINLayer):
    """DynInt-DWP, eqs. 6, 9-10: W(x) = G(x) o W with G(x) = sum_p u_p(x) v_p(x)^T (rank K), so

        (G(x) o W) X_0 = sum_p diag(u_p) W diag(v_p) X_0                                  (eq. 10)

    computed as sum_p u_p o (W (v_p o X_0)): memory B K R d, never B R R (section 3.5.2).
    u_p, v_p [B, K, R] = DNN(stop_grad(X_0)) + 1 / sqrt(K): each pair then adds 1 / K to every entry of G,
    so G = 1 and W(x) = W at init (the paper's "+ 1/K", read per rank-1 term). Eq. 12's penalty is the
    batch mean of each instance's sum over pairs of |cos(u_p, u_q)| + |cos(v_p, v_q)|.
    """

    def __init__(self, rows: int, in_dim: int, reduction: int, rank: int, bias_width: int = 0, **_: object) -> None:
        super().__init__(rows, bias_width)
        self.rank = rank
        self.pair_net = _generator(in_dim, 2 * rank * rows, reduction)
        nn.init.normal_(self.pair_net[-1].weight, std=DWP_GENERATOR_INIT_STD)
        nn.init.zeros_(self.pair_net[-1].bias)

    def pairs(self, x0: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """[B, R, d] -> (u, v), each [B, K, R]; no gradient flows back into x0."""
        b, n = x0.shape[0], x0.shape[1]
        outputs = None
        if rows is not None:  # the generator's outputs are laid out [2, K, R_full]: keep column ``rows``
            full = self.weight.shape[0]
            outputs = (torch.arange(2 * self.rank, device=rows.device)[:, None] * full + rows[None, :]).flatten()
        out = _generate(self.pair_net, x0, rows, outputs).view(b, 2, self.rank, n) + self.rank ** -0.5
        return out[:, 0], out[:, 1]

    def interaction_from_pairs(self, x0: Tensor, u: Tensor, v: Tensor, rows: Tensor | None = None) -> Tensor:
        """sum_p diag(u_p) W diag(v_p) X_0: [B, R, d]."""
        scaled = v.to(x0.dtype)[..., None] * x0[:, None]  # [B, K, R, d]: diag(v_p) X_0
        mixed = torch.matmul(self._w(rows).to(x0.dtype), scaled)  # [B, K, R, d]: W diag(v_p) X_0
        return (u.to(x0.dtype)[..., None] * mixed).sum(dim=1)

    def forward(self, x: Tensor, x0: Tensor, rows: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        u, v = self.pairs(x0, rows)
        # With ``rows`` (inference), the penalty is over the computed rows only; it is a training term.
        penalty = (orthogonal_penalty(u) + orthogonal_penalty(v)).mean()
        return x * _affine(self.interaction_from_pairs(x0, u, v, rows), self.row_bias, rows) + x, penalty


_LAYERS: dict[str, type[nn.Module]] = {
    "xdeepint": PINLayer, "da": DynamicActivationPIN, "dgp": DynamicGeneratedPIN, "dwp": DynamicWeightedPIN,
}


class DynIntModel(nn.Module):
    """Batch -> logits [B]: FieldEmbedding, subspace crossing, ``num_layers`` PIN layers of ``variant``,
    and eq. 2's output layer.

    Eq. 2: y = sigmoid((w_out X_L + b_out 1^T) 1) with w_out [1, R]: a weighted sum of the last layer's
    rows (which, through the residuals, hold every order of interaction up to num_layers + 1), summed over
    the d columns. ``forward`` returns the logit, before the sigmoid.

    ``regularization()`` is ``orth_rate`` times the orthogonal penalty (eqs. 11-12, summed over layers) of
    the last forward (0 for xdeepint and da), plus ``embed_l2`` times the per-row L2 of the embeddings that
    forward looked up (off at 0); add it to the mean log loss.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.variant not in VARIANTS:
            raise ValueError(f"model.variant must be one of {VARIANTS}, not {cfg.variant!r}")
        if cfg.subspaces < 1 or cfg.embed_dim % cfg.subspaces:
            raise ValueError(f"model.embed_dim ({cfg.embed_dim}) must be a multiple of model.subspaces "
                             f"({cfg.subspaces})")
        if cfg.rank < 1 or cfg.reduction < 1 or cfg.num_layers < 0 or cfg.hash_buckets < 2:
            raise ValueError("model.rank and model.reduction must be >= 1, model.num_layers >= 0, "
                             "model.hash_buckets >= 2")
        self.cfg = cfg
        self.embedding = FieldEmbedding(cfg.embed_dim, cfg.hash_buckets, cfg.pooling, cfg.target_match,
                                        cfg.length_fields, cfg.bias_field, cfg.bias_fields, cfg.id_match)
        self.embedding.track_l2 = cfg.embed_l2 > 0
        fields = self.embedding.num_fields
        self.rows = cfg.subspaces * fields
        layer = _LAYERS[cfg.variant]
        bias_width = cfg.embed_dim // cfg.subspaces if cfg.row_bias else 0
        self.pin = nn.ModuleList(layer(rows=self.rows, in_dim=fields * cfg.embed_dim, reduction=cfg.reduction,
                                       rank=cfg.rank, bias_width=bias_width) for _ in range(cfg.num_layers))
        self.out_weight = nn.Parameter(torch.randn(self.rows) / math.sqrt(self.rows))
        self.out_bias = nn.Parameter(torch.zeros(()))
        self._penalty: Tensor | None = None

    def forward(self, batch: Batch) -> Tensor:
        """Batch of B examples -> logits [B].

        At inference (``eval()``) the fields the batch does not carry (a removed attribute, a source the
        segment is not given) are skipped: the interaction runs on the present fields' rows only, which gives
        the same logits (their X_0 rows are zero) for fewer FLOPs. Training computes every row, as before
        (DWP's orthogonal penalty is over all R rows)."""
        x0_fields = self.embedding(batch)
        if self.training:
            return self.forward_embedded(x0_fields)
        present = self.embedding.present_fields(batch)
        if len(present) == self.embedding.num_fields:
            return self.forward_embedded(x0_fields)
        return self.forward_embedded(x0_fields, fields=torch.tensor(present, device=x0_fields.device))

    def forward_embedded(self, x0_fields: Tensor, fields: Tensor | None = None) -> Tensor:
        """X_0 [B, F, D] -> logits [B] (the model after the embedding layer). With ``fields`` (indices), only
        those fields' rows are computed: exact when the other fields of X_0 are zero."""
        rows = None
        if fields is not None:
            n_fields, h = x0_fields.shape[1], self.cfg.subspaces
            x0_fields = x0_fields[:, fields]
            rows = (torch.arange(h, device=fields.device)[:, None] * n_fields + fields[None, :]).flatten()
        x0 = split_subspaces(x0_fields, self.cfg.subspaces)  # [B, R, d] (row s * F + f; with fields, F = len)
        x, penalty = x0, None
        for layer in self.pin:
            x, p = layer(x, x0) if rows is None else layer(x, x0, rows)
            if p is not None:
                penalty = p if penalty is None else penalty + p
        self._penalty = penalty
        w_out = self.out_weight if rows is None else self.out_weight[rows]
        # Eq. 2 as a weighted sum over rows (not a matmul: torch lowers a vector-matrix product to mv or bmm
        # depending on strides, and flop_counter counts only the latter; the costs compare like with like).
        return ((w_out.to(x.dtype)[:, None] * x).sum(dim=1) + self.out_bias).sum(dim=-1)

    def orthogonal_penalty(self) -> Tensor:
        """Unweighted eqs. 11-12 penalty of the last forward, summed over layers (0 if none)."""
        if self._penalty is None:
            return self.out_bias.new_zeros(())
        return self._penalty

    def regularization(self) -> Tensor:
        """The scalar a trainer adds to the mean log loss: orth_rate * orthogonal_penalty(), plus embed_l2 times
        the batch mean of the summed squares of the embedding rows the last forward looked up."""
        reg = self.cfg.orth_rate * self.orthogonal_penalty()
        if self.cfg.embed_l2 > 0 and self.embedding.last_l2 is not None:
            reg = reg + self.cfg.embed_l2 * self.embedding.last_l2
        return reg
