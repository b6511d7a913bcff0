"""The target-aware id match fields (``model.id_match``): per id attribute of the ad history (ad, campaign, advertiser,
semantic ids), the bucketed count of its events equal to the target's id. Checked against counts worked out here by
loops over plain lists, and by what the fields are for: a label that only a campaign-level re-exposure explains is
learnt with them and not without."""
from __future__ import annotations

from dataclasses import replace

import torch

from schemas.ebf import ALL_SEQ_COLUMNS, TARGET_COLUMNS, present_columns
from test_target_match import SMALL, _batch, fitted_ne, hand_bucket
from training.batch import Batch
from training.costs import model_costs
from training.model import ID_MATCH_COLUMNS, MATCH_COLUMNS, DynIntModel, FieldEmbedding

ID_ATTRIBUTES = ("ad_id", "campaign_id", "advertiser_id", "semantic_ids")


def test_id_match_fields_count_the_history_events_equal_to_the_target():
    emb = FieldEmbedding(embed_dim=4, hash_buckets=97, target_match=True, id_match=True)
    for t in emb.tables.values():
        torch.nn.init.normal_(t.weight)
    batch = _batch(16, present_columns(("ad",), ()), seed=4, n=12)
    for a in ID_ATTRIBUTES:  # targets among the history's few ids, so that counts spread over the buckets
        batch.targets[f"tgt_{a}"] = torch.randint(0, 5, (16,), generator=torch.Generator().manual_seed(len(a)))
    x0 = emb(batch).detach()
    assert ID_MATCH_COLUMNS == tuple(f"ad_match_{a}" for a in ID_ATTRIBUTES)
    assert x0.shape == (16, len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS) + len(MATCH_COLUMNS) + 4, 4)
    base = len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS) + len(MATCH_COLUMNS)
    buckets = set()
    for k, a in enumerate(ID_ATTRIBUTES):
        table = emb.tables[ID_MATCH_COLUMNS[k]].weight.detach()
        for r in range(16):
            seq = batch.seqs[f"ad_seq_{a}"][r].tolist()[: int(batch.lengths["ad"][r])]
            t = int(batch.targets[f"tgt_{a}"][r])
            count = sum(1 for v in seq if v == t) if t != 0 else 0
            buckets.add(hand_bucket(count))
            torch.testing.assert_close(x0[r, base + k], table[hand_bucket(count)])
    assert len(buckets) >= 3


def test_a_removed_id_attribute_has_a_zero_match_field_skipped_at_inference():
    """Without the ad source's ad_id sequence, its match field is a zero row, skipped exactly at inference; every
    present id match field is one lookup per example."""
    model = DynIntModel(replace(SMALL, variant="dwp", id_match=True)).eval()
    cols = tuple(c for c in present_columns(("ad",), ()) if c != "ad_seq_ad_id")
    batch = _batch(6, cols, n=5)
    batch.segment = 0
    emb = model.embedding
    present = {emb.field_columns[i] for i in emb.present_fields(batch)}
    assert "ad_match_ad_id" not in present and {"ad_match_campaign_id", "ad_match_semantic_ids"} <= present
    with torch.no_grad():
        x0 = emb(batch)
        torch.testing.assert_close(x0[:, emb.field_columns.index("ad_match_ad_id")], torch.zeros(6, SMALL.embed_dim))
        torch.testing.assert_close(model(batch), model.forward_embedded(x0), rtol=1e-5, atol=1e-6)
    lookups = model_costs(model, [batch], {"0": 6})["per_segment"]["0"]["embedding_lookups"]
    assert lookups == len(TARGET_COLUMNS) + len(cols) * 5 + 1 + 3  # category match, 3 id matches


def test_the_id_match_learns_a_campaign_reexposure_that_hashed_ids_alone_do_not():
    """Label = the target's campaign is in the ad history, on another ad (a campaign-level re-exposure), over 5,000
    campaigns: the model with the id match fields has the equality as an input and scores a far lower NE on fresh
    rows than the same model without them."""
    def data(seed: int, b: int = 512) -> Batch:
        g = torch.Generator().manual_seed(seed)
        n, campaigns = 8, 5000
        lengths = {"ad": torch.full((b,), n)}
        tgt = torch.randint(1, campaigns + 1, (b,), generator=g)
        hist = torch.randint(1, campaigns + 1, (b, n), generator=g)
        label = (torch.rand(b, generator=g) < 0.5)
        hist[:, 3] = torch.where(label, tgt, hist[:, 3])  # a re-exposure for half of the rows
        targets = {c: torch.randint(1, 1000, (b,), generator=g) for c in TARGET_COLUMNS}
        targets["tgt_campaign_id"] = tgt
        seqs = {"ad_seq_campaign_id": hist, "ad_seq_ad_id": torch.randint(1, 50_000, (b, n), generator=g)}
        return Batch(targets=targets, seqs=seqs, lengths=lengths, label=label.float())

    scores = {match: fitted_ne(replace(SMALL, id_match=match, orth_rate=0.0), data) for match in (False, True)}
    assert scores[True] < 0.3 and scores[False] > 0.8, scores
