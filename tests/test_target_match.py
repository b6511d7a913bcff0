"""The target-aware match fields (``model.target_match``): per source, the bucketed count of history events of the
target ad's category. Checked against counts and buckets worked out here by loops over plain lists, and by what
the field is for: a label that only the match explains is learnt with it and not without it."""
from __future__ import annotations

from dataclasses import replace

import torch

from dynamix_spark.config import ModelConfig
from schemas.ebf import ALL_SEQ_COLUMNS, TARGET_COLUMNS, present_columns
from training.batch import Batch
from training.costs import model_costs
from training.metrics import normalized_entropy
from training.model import MATCH_COLUMNS, DynIntModel, FieldEmbedding, match_bucket

SMALL = ModelConfig(variant="xdeepint", embed_dim=8, num_layers=2, subspaces=2, rank=3, reduction=4,
                    orth_rate=1e-2, hash_buckets=97, pooling="mean", target_match=True)


def hand_bucket(count: int) -> int:
    """0 -> 0, 1 -> 1, 2-3 -> 2, 4-7 -> 3, ..., 32-63 -> 6, >= 64 -> 7."""
    if count == 0:
        return 0
    b, lo = 1, 1
    while b < 7 and count >= 2 * lo:
        b, lo = b + 1, 2 * lo
    return b


def test_hand_bucket_table():
    assert [hand_bucket(c) for c in (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 500)] == \
        [0, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]


def test_match_bucket_counts_valid_positions_equal_to_the_target():
    g = torch.Generator().manual_seed(3)
    n = 80
    ids = torch.randint(1, 4, (40, n), generator=g)  # 3 ids: many matches, counts spread over the buckets
    lengths = torch.randint(0, n + 1, (40,), generator=g)
    lengths[:3] = torch.tensor([0, n, 1])
    target = torch.randint(0, 4, (40,), generator=g)  # 0: a null target never matches
    ids = torch.where(torch.arange(n)[None, :] < lengths[:, None], ids, torch.zeros_like(ids))
    got = match_bucket(ids, target, lengths).tolist()
    for r in range(40):
        row, t, ln = ids[r].tolist(), int(target[r]), int(lengths[r])
        count = sum(1 for j in range(ln) if row[j] == t) if t != 0 else 0
        assert got[r] == hand_bucket(count), (r, count)
    assert len(set(got)) >= 5


def _batch(b: int, columns: tuple[str, ...], seed: int = 0, n: int = 6) -> Batch:
    g = torch.Generator().manual_seed(seed)
    sources = sorted({c.split("_seq_")[0] for c in columns} | {"ad"})
    lengths = {s: torch.randint(0, n + 1, (b,), generator=g) for s in sources}
    seqs = {c: torch.randint(1, 5, (b, n), generator=g) * (torch.arange(n)[None, :] < lengths[c.split("_seq_")[0]][:, None])
            for c in columns}
    targets = {c: torch.randint(1, 5 if c == "tgt_category_id" else 10_000, (b,), generator=g) for c in TARGET_COLUMNS}
    return Batch(targets=targets, seqs=seqs, lengths=lengths, label=torch.zeros(b))


def test_match_fields_are_the_bucket_embeddings_and_zero_when_the_source_is_absent():
    emb = FieldEmbedding(embed_dim=4, hash_buckets=97, target_match=True)
    for t in emb.tables.values():
        torch.nn.init.normal_(t.weight)
    cols = present_columns(("ad", "organic"), ())  # no page source: its match field is absent
    batch = _batch(12, cols)
    x0 = emb(batch).detach()
    assert x0.shape == (12, len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS) + len(MATCH_COLUMNS), 4)
    assert MATCH_COLUMNS == ("ad_match_category_id", "organic_match_category_id", "page_match_category_id")
    base = len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS)
    for k, src in enumerate(("ad", "organic", "page")):
        table = emb.tables[MATCH_COLUMNS[k]].weight.detach()
        for r in range(12):
            if src == "page":
                want = torch.zeros(4)
            else:
                seq = batch.seqs[f"{src}_seq_category_id"][r].tolist()[: int(batch.lengths[src][r])]
                count = sum(1 for v in seq if v == int(batch.targets["tgt_category_id"][r]))
                want = table[hand_bucket(count)]
            torch.testing.assert_close(x0[r, base + k], want)
    assert emb.present_fields(batch) == [i for i, c in enumerate(emb.field_columns)
                                         if not (c.startswith("page_") or c in set(ALL_SEQ_COLUMNS) - set(cols))]


def test_inference_skips_absent_match_fields_exactly_and_counts_their_lookups():
    """Eval-mode logits with the absent fields skipped equal the full computation on X_0 (whose absent rows are
    zero); lookups: targets + sequence positions + one per present match field, counted here."""
    model = DynIntModel(replace(SMALL, variant="dwp")).eval()
    cols = present_columns(("ad_reduced",), ("surface", "media_type", "position", "device_type"))
    batch = _batch(5, cols)
    batch.segment = 0
    with torch.no_grad():
        full = model.forward_embedded(model.embedding(batch))
        torch.testing.assert_close(model(batch), full, rtol=1e-5, atol=1e-6)
    costs = model_costs(model, [batch], {"0": 5})
    assert costs["per_segment"]["0"]["embedding_lookups"] == len(TARGET_COLUMNS) + 7 * 6 + 1  # ad match only


def test_the_match_field_learns_what_hashed_ids_alone_do_not():
    """Label = the target's category is in the organic history. Both models see the same ids; only the one with the
    match field has the equality as an input. Trained alike, it scores a far lower NE on fresh rows."""
    def data(seed: int, b: int = 512) -> Batch:
        g = torch.Generator().manual_seed(seed)
        n, cats = 8, 50
        lengths = {"ad": torch.full((b,), 4), "organic": torch.full((b,), n)}
        org = torch.randint(1, cats + 1, (b, n), generator=g)
        tgt = torch.randint(1, cats + 1, (b,), generator=g)
        label = (org == tgt[:, None]).any(dim=1).float()
        targets = {c: torch.randint(1, 1000, (b,), generator=g) for c in TARGET_COLUMNS}
        targets["tgt_category_id"] = tgt
        seqs = {"organic_seq_category_id": org, "ad_seq_category_id": torch.randint(1, cats + 1, (b, 4), generator=g)}
        return Batch(targets=targets, seqs=seqs, lengths=lengths, label=label)

    scores = {match: fitted_ne(replace(SMALL, target_match=match, orth_rate=0.0), data) for match in (False, True)}
    assert scores[True] < 0.3 and scores[False] > 0.8, scores


def fitted_ne(cfg: ModelConfig, data) -> float:
    """NE on fresh rows (``data(10_000, 2048)``) of DynIntModel(cfg) trained 150 Adam steps (lr 0.02) on
    ``data(step)`` batches, from torch seed 0."""
    torch.manual_seed(0)
    model = DynIntModel(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for step in range(150):
        b = data(step)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(b), b.label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test = data(10_000, 2048)
    with torch.no_grad():
        p = torch.sigmoid(model(test)).numpy()
    return normalized_entropy(test.label.numpy(), p)


def test_length_fields_are_the_bucketed_lengths_and_zero_for_an_absent_source():
    """``model.length_fields``: per source, the embedding of its length's bucket (the same buckets as the match
    counts, worked out by hand_bucket); a source the batch carries no column of is a zero field."""
    from training.model import LENGTH_COLUMNS

    emb = FieldEmbedding(embed_dim=4, hash_buckets=97, target_match=True, length_fields=True)
    for t in emb.tables.values():
        torch.nn.init.normal_(t.weight)
    cols = present_columns(("ad_reduced",), ("surface", "media_type", "position", "device_type"))
    batch = _batch(12, cols, n=70)
    batch.lengths["ad"][:4] = torch.tensor([0, 1, 64, 70])
    x0 = emb(batch).detach()
    assert LENGTH_COLUMNS == ("ad_length", "organic_length", "page_length")
    assert x0.shape[1] == len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS) + len(MATCH_COLUMNS) + 3
    base = len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS) + len(MATCH_COLUMNS)
    table = emb.tables["ad_length"].weight.detach()
    for r in range(12):
        torch.testing.assert_close(x0[r, base], table[hand_bucket(int(batch.lengths["ad"][r]))])
        torch.testing.assert_close(x0[r, base + 1], torch.zeros(4))  # organic: not in the batch
        torch.testing.assert_close(x0[r, base + 2], torch.zeros(4))
    model = DynIntModel(replace(SMALL, length_fields=True)).eval()
    batch.segment = 0
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model.forward_embedded(model.embedding(batch)), rtol=1e-5, atol=1e-6)
    lookups = model_costs(model, [batch], {"0": 12})["per_segment"]["0"]["embedding_lookups"]
    assert lookups == len(TARGET_COLUMNS) + 7 * 70 + 1 + 1  # targets, 7 ad columns x 70, ad match, ad length
