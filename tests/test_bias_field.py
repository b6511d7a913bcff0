"""The constant field (``model.bias_field``): one learned vector as the last field of every example's X_0.

Checked by hand (the field is the parameter in every row, present whatever a segment lacks, no lookup, skipped
never), and by what it is for: a PIN network fits a label that needs a constant term in its interactions only
when it has the field or a field that happens to be constant."""
from __future__ import annotations

from dataclasses import replace

import torch

from dynamix_spark.config import ModelConfig
from schemas.ebf import ALL_SEQ_COLUMNS, TARGET_COLUMNS, present_columns
from test_target_match import _batch
from training.batch import Batch
from training.costs import model_costs
from training.model import BIAS_COLUMN, DynIntModel, FieldEmbedding

SMALL = ModelConfig(variant="dwp", embed_dim=8, num_layers=2, subspaces=2, rank=3, reduction=4,
                    orth_rate=1e-2, hash_buckets=97, pooling="mean", bias_field=True)
REMOVED = ("surface", "media_type", "position", "device_type")


def test_the_bias_field_is_the_parameter_in_every_row_and_always_present():
    emb = FieldEmbedding(embed_dim=4, hash_buckets=97, bias_field=True)
    cols = present_columns(("ad_reduced",), REMOVED)  # a segment without the 4 attributes
    batch = _batch(7, cols)
    x0 = emb(batch).detach()
    assert emb.field_columns[-1] == BIAS_COLUMN
    assert x0.shape == (7, len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS) + 1, 4)
    for r in range(7):
        torch.testing.assert_close(x0[r, -1], emb.bias.detach())
    removed = {i for i, c in enumerate(emb.field_columns) if c in ALL_SEQ_COLUMNS and c not in cols}
    assert len(removed) == len(ALL_SEQ_COLUMNS) - len(cols) > 0
    for i in removed:
        assert float(x0[:, i].abs().sum()) == 0.0
    assert emb.present_fields(batch) == [i for i in range(x0.shape[1]) if i not in removed]
    assert emb.extra_lookups(batch) == 0  # a parameter, not a table: no lookup
    # off: the papers' X_0, unchanged
    assert BIAS_COLUMN not in FieldEmbedding(embed_dim=4, hash_buckets=97).field_columns


def test_inference_skips_absent_fields_exactly_with_the_bias_field_and_looks_up_the_same():
    model = DynIntModel(SMALL).eval()
    cols = present_columns(("ad_reduced",), REMOVED)
    batch = _batch(5, cols)
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model.forward_embedded(model.embedding(batch)), rtol=1e-5, atol=1e-6)
    lookups = len(TARGET_COLUMNS) + len(cols) * 6  # a target each, and every position of each present sequence
    on = model_costs(model, [batch], {"0": 5})["per_segment"]["0"]["embedding_lookups"]
    off = model_costs(DynIntModel(replace(SMALL, bias_field=False)).eval(), [batch], {"0": 5})
    assert on == off["per_segment"]["0"]["embedding_lookups"] == lookups


def _fit(model: DynIntModel, batch: Batch, steps: int = 600) -> float:
    """Mean squared error after fitting the logits to ``batch.label`` (a regression: the form is what is tested)."""
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.02)
    loss_fn = torch.nn.MSELoss()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(batch), batch.label)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(loss_fn(model(batch), batch.label))


def _fit_frozen(cfg: ModelConfig, ref: DynIntModel, batch: Batch) -> float:
    """:func:`_fit` of a model of ``cfg`` (seed 0) whose embedding tables are ``ref``'s, frozen."""
    torch.manual_seed(0)
    model = DynIntModel(cfg)
    model.embedding.tables.load_state_dict(ref.embedding.tables.state_dict())
    for t in model.embedding.tables.values():
        t.weight.requires_grad_(False)
    return _fit(model, batch)


def test_a_per_dimension_linear_term_needs_the_bias_field():
    """xDeepInt, one PIN layer, h = 1: logit = sum_r w_r sum_d (x_rd (W x0)_rd + x_rd) + b. Its linear terms weigh
    every dimension of a field alike (w_r sum_d x_rd); the other terms are products of two fields' entries. So
    y = a_0 - a_1 (two dimensions of one field's embedding, the tables frozen) is out of its reach, and in reach
    with a constant row c: x_rd W_rc c_d weighs dimension d by c_d."""
    cfg = replace(SMALL, variant="xdeepint", num_layers=1, subspaces=1, embed_dim=4)
    cols = present_columns(("ad_reduced",), REMOVED)
    batch = _batch(512, cols, seed=1)
    torch.manual_seed(0)
    ref = DynIntModel(replace(cfg, bias_field=False))
    with torch.no_grad():
        a = ref.embedding(batch)[:, 0]  # the first target field's embedding, [B, 4]
    y = a[:, 0] - a[:, 1]
    batch.label = (y - y.mean()) / y.std()
    losses = {bias: _fit_frozen(replace(cfg, bias_field=bias), ref, batch) for bias in (False, True)}
    assert losses[True] < 0.05 and losses[False] > 0.3, losses
