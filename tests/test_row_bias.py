"""The PIN layers' row bias (``model.row_bias``: X_l = X_{l-1} o (W X_0 + B) + X_{l-1}) and several constant fields
(``model.bias_fields``), checked by hand, by the identity each layer's output must satisfy, and by what they are for.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from dynamix_spark.config import ModelConfig
from schemas.ebf import ALL_SEQ_COLUMNS, TARGET_COLUMNS, present_columns
from test_bias_field import REMOVED, SMALL, _fit_frozen
from test_target_match import _batch
from training.model import (BIAS_COLUMN, DynamicActivationPIN, DynamicGeneratedPIN, DynamicWeightedPIN, DynIntModel,
                            FieldEmbedding, PINLayer)


def test_the_xdeepint_layer_with_a_row_bias_by_hand():
    g = torch.Generator().manual_seed(3)
    layer = PINLayer(rows=3, bias_width=2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 3, generator=g, dtype=torch.float64))
        layer.row_bias.copy_(torch.randn(3, 2, generator=g, dtype=torch.float64))
    x = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(4, 3, 2, generator=g, dtype=torch.float64)
    w, b = layer.weight.detach().numpy(), layer.row_bias.detach().numpy()
    xn, x0n = x.numpy(), x0.numpy()
    want = np.zeros((4, 3, 2))
    for n in range(4):
        for r in range(3):
            for d in range(2):
                wx0 = sum(w[r, j] * x0n[n, j, d] for j in range(3))
                want[n, r, d] = xn[n, r, d] * (wx0 + b[r, d]) + xn[n, r, d]
    out, _ = layer(x, x0)
    np.testing.assert_allclose(out.detach().numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("cls", [PINLayer, DynamicActivationPIN, DynamicGeneratedPIN, DynamicWeightedPIN])
def test_every_variant_adds_the_bias_to_its_interaction(cls):
    """out(B) - out(0) = X_{l-1} o B (times DA's gate, which does not depend on B), on all rows and on a subset."""
    torch.manual_seed(0)
    layer = cls(rows=6, in_dim=12, reduction=2, rank=3, bias_width=2).double()
    assert layer.row_bias is not None and float(layer.row_bias.detach().abs().sum()) == 0.0  # zero at init
    x, x0 = torch.randn(5, 6, 2, dtype=torch.float64), torch.randn(5, 6, 2, dtype=torch.float64)
    bias = torch.randn(6, 2, dtype=torch.float64)
    rows = torch.tensor([0, 2, 5])
    for sel in (None, rows):
        xs, x0s = (x, x0) if sel is None else (x[:, sel], x0[:, sel])
        args = (xs, x0s) if sel is None else (xs, x0s, sel)
        with torch.no_grad():
            layer.row_bias.zero_()
            without, _ = layer(*args)
            layer.row_bias.copy_(bias)
            with_b, _ = layer(*args)
        b = bias if sel is None else bias[sel]
        gate = layer.gate(x0s, sel)[..., None] if cls is DynamicActivationPIN else 1.0
        torch.testing.assert_close(with_b - without, xs * b * gate)


def test_off_by_default_and_a_zero_bias_is_the_papers_model():
    assert ModelConfig().row_bias is False and ModelConfig().bias_fields == 1
    assert all(layer.row_bias is None for layer in DynIntModel(SMALL).pin)
    torch.manual_seed(0)
    plain = DynIntModel(SMALL).eval()
    biased = DynIntModel(replace(SMALL, row_bias=True)).eval()
    missing, unexpected = biased.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == [f"pin.{i}.row_bias" for i in range(SMALL.num_layers)] and not unexpected
    batch = _batch(9, present_columns(("ad",), ()), seed=2)
    with torch.no_grad():
        torch.testing.assert_close(biased(batch), plain(batch))


def test_inference_skips_absent_fields_exactly_with_the_row_bias_and_several_constant_fields():
    torch.manual_seed(1)
    model = DynIntModel(replace(SMALL, row_bias=True, bias_fields=3))
    with torch.no_grad():
        for layer in model.pin:
            layer.row_bias.normal_()
    model.eval()
    batch = _batch(6, present_columns(("ad_reduced",), REMOVED))
    with torch.no_grad():
        skipped = model(batch)
        torch.testing.assert_close(skipped, model.forward_embedded(model.embedding(batch)), rtol=1e-5, atol=1e-6)


def test_several_constant_fields_are_parameters_in_every_row():
    emb = FieldEmbedding(embed_dim=4, hash_buckets=97, bias_field=True, bias_fields=3)
    cols = present_columns(("ad_reduced",), REMOVED)
    batch = _batch(5, cols)
    x0 = emb(batch).detach()
    base = len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS)
    assert emb.field_columns[base:] == (BIAS_COLUMN, "bias_2", "bias_3") and x0.shape[1] == base + 3
    wants = [emb.bias.detach(), emb.more_biases.detach()[0], emb.more_biases.detach()[1]]
    assert not torch.equal(wants[1], wants[2])  # each its own vector
    for k, want in enumerate(wants):
        for r in range(5):
            torch.testing.assert_close(x0[r, base + k], want)
    assert emb.present_fields(batch)[-3:] == [base, base + 1, base + 2]
    assert emb.extra_lookups(batch) == 0


def test_per_row_constants_that_one_constant_field_cannot_give():
    """xDeepInt, one PIN layer, h = 1, embed 4, the tables frozen. Its terms linear in one field's entries are
    x_rd (W x0)_rd's constant part: with constant fields c_1..c_m, row r weighs dimension d by
    sum_k W_{r,c_k} c_kd, a vector in the span of the m constant vectors. y = a_0 - a_1 + b_2 - b_3 (a, b: two
    fields' embeddings) needs row a to weigh (1, -1, 0, 0) and row b (0, 0, 1, -1): out of reach with one constant
    field (one direction), in reach with a row bias (a free [R, d] term)."""
    cfg = replace(SMALL, variant="xdeepint", num_layers=1, subspaces=1, embed_dim=4, bias_field=True)
    cols = present_columns(("ad_reduced",), REMOVED)
    batch = _batch(512, cols, seed=1)
    torch.manual_seed(0)
    ref = DynIntModel(cfg)
    with torch.no_grad():
        x0 = ref.embedding(batch)
    y = x0[:, 0, 0] - x0[:, 0, 1] + x0[:, 1, 2] - x0[:, 1, 3]
    batch.label = (y - y.mean()) / y.std()
    losses = {row_bias: _fit_frozen(replace(cfg, row_bias=row_bias), ref, batch) for row_bias in (False, True)}
    assert losses[True] < 0.05 and losses[False] > 0.2, losses
