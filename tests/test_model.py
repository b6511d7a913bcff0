"""DynInt model and metrics, checked against independent computations: hand-worked numbers, explicit
per-example [R, R] matrices, brute-force pair counts. CPU only, small shapes (runs in seconds)."""
from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dynamix_spark.config import ModelConfig
from schemas.ebf import ALL_SEQ_COLUMNS, EBF_SOURCES, TARGET_COLUMNS, present_columns, seq_col
from training.batch import Batch
from training.metrics import BinaryMetrics, auc, log_loss, normalized_entropy
from training.model import (
    FIELD_COLUMNS, DynamicActivationPIN, DynamicGeneratedPIN, DynamicWeightedPIN, DynIntModel, FieldEmbedding,
    PINLayer, orthogonal_penalty, split_subspaces,
)

SMALL = ModelConfig(variant="xdeepint", embed_dim=8, num_layers=2, subspaces=2, rank=3, reduction=4,
                    orth_rate=1e-2, hash_buckets=97, pooling="mean")
SEQ_LEN = 5
AD_ONLY = present_columns(("ad",), ())
AD_REDUCED = present_columns(("ad_reduced",), ("surface", "media_type", "position", "device_type"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (100x slower on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_batch(b: int, columns: tuple[str, ...], seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    sources = sorted({c.split("_seq_")[0] for c in columns})
    lengths = {s: torch.randint(0, SEQ_LEN + 1, (b,), generator=g) for s in sources}
    lengths = {s: torch.cat([torch.tensor([0, SEQ_LEN]), l[2:]]) for s, l in lengths.items()}  # empty and full
    seqs = {}
    for c in columns:
        ids = torch.randint(1, 10_000, (b, SEQ_LEN), generator=g)
        pos = torch.arange(SEQ_LEN)[None, :]
        seqs[c] = torch.where(pos < lengths[c.split("_seq_")[0]][:, None], ids, torch.zeros_like(ids))
    return Batch(
        targets={c: torch.randint(0, 10_000, (b,), generator=g) for c in TARGET_COLUMNS},
        seqs=seqs, lengths=lengths, label=torch.randint(0, 2, (b,), generator=g).float(),
    )


def _randomise_last(net: torch.nn.Sequential, std: float = 0.5) -> None:
    with torch.no_grad():
        net[-1].weight.normal_(0.0, std)
        net[-1].bias.normal_(0.0, std)


# ----------------------------------------------------------------------------------------------- embedding

def test_field_embedding_matches_hand_pooling_and_zero_absent_fields():
    emb = FieldEmbedding(embed_dim=4, hash_buckets=97, pooling="mean")
    batch = make_batch(6, AD_ONLY)
    x0 = emb(batch)
    assert x0.shape == (6, len(TARGET_COLUMNS) + len(ALL_SEQ_COLUMNS), 4)
    for i, c in enumerate(FIELD_COLUMNS):
        table = emb.tables[c].weight.detach()
        for r in range(6):
            if c in batch.targets:
                want = table[int(batch.targets[c][r]) % 97]
            elif c in batch.seqs:
                n = int(batch.lengths["ad"][r])
                ids = [int(v) % 97 for v in batch.seqs[c][r, :n]]
                want = sum((table[j] for j in ids), torch.zeros(4)) / max(n, 1)  # length 0 -> zeros
            else:
                want = torch.zeros(4)
            torch.testing.assert_close(x0[r, i].detach(), want, atol=1e-7, rtol=1e-6)


def test_embed_l2_is_the_mean_squared_norm_of_the_looked_up_rows_by_hand():
    """model.embed_l2: rate x (1/B) x sum over examples of the squared norms of the rows the example looked
    up: every target row, and sequence rows at positions < length (padding is not looked up for pooling)."""
    rate = 0.3
    model = DynIntModel(replace(SMALL, embed_l2=rate, orth_rate=0.0))
    batch = make_batch(6, AD_ONLY)
    model(batch)
    want = 0.0
    for r in range(6):
        for c in TARGET_COLUMNS:
            want += float(model.embedding.tables[c].weight.detach()[int(batch.targets[c][r]) % 97].pow(2).sum())
        for c in AD_ONLY:
            for j in range(int(batch.lengths["ad"][r])):
                want += float(model.embedding.tables[c].weight.detach()[int(batch.seqs[c][r, j]) % 97].pow(2).sum())
    assert float(model.regularization()) == pytest.approx(rate * want / 6, rel=1e-5)
    off = DynIntModel(replace(SMALL, orth_rate=0.0))  # embed_l2 = 0 by default: nothing added
    off(batch)
    assert float(off.regularization()) == 0.0


def test_ids_are_taken_mod_hash_buckets():
    emb = FieldEmbedding(embed_dim=4, hash_buckets=97, pooling="mean")
    batch = make_batch(4, AD_ONLY)
    shifted = Batch({c: v + 97 * 3 for c, v in batch.targets.items()},
                    {c: torch.where(v > 0, v + 97, v) for c, v in batch.seqs.items()}, batch.lengths, batch.label)
    torch.testing.assert_close(emb(batch), emb(shifted))


def test_attention_pooling_starts_as_mean_and_follows_softmax_by_hand():
    batch = make_batch(5, AD_ONLY)
    mean, att = FieldEmbedding(4, 97, "mean"), FieldEmbedding(4, 97, "attention")
    att.tables.load_state_dict(mean.tables.state_dict())
    torch.testing.assert_close(att(batch), mean(batch))  # zero query: uniform weights over valid positions
    col = seq_col("ad", EBF_SOURCES["ad"][0])
    q = torch.tensor([1.0, -2.0, 0.5, 3.0])
    with torch.no_grad():
        att.queries[col].copy_(q)
    got = att(batch)[:, FIELD_COLUMNS.index(col)].detach()
    table = att.tables[col].weight.detach()
    for r in range(5):
        n = int(batch.lengths["ad"][r])
        if n == 0:
            assert torch.all(got[r] == 0)
            continue
        e = table[batch.seqs[col][r, :n] % 97]
        w = [math.exp(float(e[j] @ q) / 2.0) for j in range(n)]  # score / sqrt(D), D = 4
        want = sum(w[j] / sum(w) * e[j] for j in range(n))
        torch.testing.assert_close(got[r], want, atol=1e-6, rtol=1e-5)


def test_absent_columns_are_never_looked_up_nor_trained():
    model = DynIntModel(replace(SMALL, variant="dwp"))
    calls = {c: 0 for c in FIELD_COLUMNS}
    for c, t in model.embedding.tables.items():
        t.register_forward_hook(lambda *_, c=c: calls.__setitem__(c, calls[c] + 1))
    batch = make_batch(8, AD_REDUCED)
    model(batch).sum().backward()
    for c in FIELD_COLUMNS:
        present = c in TARGET_COLUMNS or c in AD_REDUCED
        assert calls[c] == (1 if present else 0), c
        grad = model.embedding.tables[c].weight.grad
        assert (grad is not None and grad.abs().sum() > 0) if present else grad is None, c
    assert sum(calls.values()) == len(TARGET_COLUMNS) + 7  # 11 ad attributes minus the 4 removed


# ------------------------------------------------------------------------------------------------ model

@pytest.mark.parametrize("variant", ["xdeepint", "da", "dgp", "dwp"])
@pytest.mark.parametrize("columns", [ALL_SEQ_COLUMNS, AD_REDUCED, ()], ids=["all", "ad_reduced", "none"])
def test_logits_shape_and_regularization_per_variant(variant, columns):
    model = DynIntModel(replace(SMALL, variant=variant, pooling="attention" if variant == "da" else "mean"))
    logits = model(make_batch(7, columns))
    assert logits.shape == (7,) and torch.isfinite(logits).all()
    reg = model.regularization()
    assert reg.shape == () and torch.isfinite(reg)
    assert (reg > 0) if variant in ("dgp", "dwp") else (reg == 0)


def test_output_layer_is_eq2_on_the_stacked_subspaces():
    model = DynIntModel(replace(SMALL, num_layers=0))
    x0 = torch.randn(3, len(FIELD_COLUMNS), 8)
    f = len(FIELD_COLUMNS)
    w, b = model.out_weight.detach(), float(model.out_bias.detach())
    for r in range(3):
        # Row s * F + f of the stacked map is field f's s-th block of d = 4 columns.
        want = sum(float(w[s * f + j]) * float(x0[r, j, 4 * s:4 * s + 4].sum()) for s in range(2) for j in range(f))
        assert float(model.forward_embedded(x0)[r].detach()) == pytest.approx(want + 4 * b, rel=1e-5, abs=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        DynIntModel(replace(SMALL, embed_dim=9))


def test_da_gate_is_one_at_init_so_da_equals_xdeepint():
    torch.manual_seed(0)
    base = DynIntModel(SMALL)
    da = DynIntModel(replace(SMALL, variant="da"))
    missing, unexpected = da.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(".gate_net." in k for k in missing)
    batch = make_batch(6, ALL_SEQ_COLUMNS)
    x0 = split_subspaces(da.embedding(batch), 2)
    for layer in da.pin:
        assert torch.all(layer.gate(x0) == 1.0)
    torch.testing.assert_close(da(batch), base(batch))


def _rand_x0(b=5, rows=7, d=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, rows, d, generator=g, dtype=dtype), torch.randn(b, rows, d, generator=g, dtype=dtype)


def test_dwp_weights_are_one_at_init():
    torch.manual_seed(1)
    base = DynIntModel(SMALL)
    dwp = DynIntModel(replace(SMALL, variant="dwp"))
    missing, _ = dwp.load_state_dict(base.state_dict(), strict=False)
    assert missing and all(".pair_net." in k for k in missing)
    batch = make_batch(6, ALL_SEQ_COLUMNS)
    x0 = split_subspaces(dwp.embedding(batch), 2).detach()
    for layer in dwp.pin:
        u, v = layer.pairs(x0)
        g = torch.stack([sum(torch.outer(u[i, p], v[i, p]) for p in range(3)) for i in range(6)])
        assert (g - 1).abs().max() < 0.05  # small random generator output around the + 1/K offsets
    torch.testing.assert_close(dwp(batch), base(batch), atol=1e-4, rtol=1e-3)  # W(x) ~ W
    with torch.no_grad():  # with the generator's last layer at zero, G(x) is exactly 1: W(x) = W
        for layer in dwp.pin:
            layer.pair_net[-1].weight.zero_()
    torch.testing.assert_close(dwp(batch), base(batch), atol=1e-7, rtol=1e-6)
    layer = dwp.pin[0]
    x = torch.randn_like(x0)
    want = x * torch.einsum("gf,bfd->bgd", layer.weight.detach(), x0) + x  # eq. 3 by hand
    torch.testing.assert_close(layer(x, x0)[0].detach(), want, atol=1e-6, rtol=1e-5)


def test_dwp_low_rank_equals_explicit_per_example_matrices():
    torch.manual_seed(2)
    layer = DynamicWeightedPIN(rows=7, in_dim=14, reduction=2, rank=3).double()
    _randomise_last(layer.pair_net)
    x, x0 = _rand_x0()
    out, _ = layer(x, x0)
    u, v = layer.pairs(x0)
    w = layer.weight.detach()
    for i in range(5):
        g = torch.zeros(7, 7, dtype=torch.float64)
        for p, a, c in itertools.product(range(3), range(7), range(7)):
            g[a, c] += u[i, p, a] * v[i, p, c]
        assert (g - 1).abs().max() > 0.1  # far from the init, so the check is not trivial
        want = x[i] * ((g * w) @ x0[i]) + x[i]  # eq. 6: (G o W) X_0
        torch.testing.assert_close(out[i].detach(), want.detach(), atol=1e-5, rtol=0)


def test_dgp_low_rank_equals_explicit_per_example_matrices():
    torch.manual_seed(3)
    layer = DynamicGeneratedPIN(rows=7, in_dim=14, reduction=2, rank=3).double()
    _randomise_last(layer.sigma_net)
    x, x0 = _rand_x0()
    out, _ = layer(x, x0)
    assert torch.all(DynamicGeneratedPIN(7, 14, 2, 3).sigma(x0.float()) == 1.0)  # W(x) = U V^T at init
    sigma = layer.sigma(x0).detach()
    assert (sigma - 1).abs().max() > 0.1
    u, v = layer.u.detach(), layer.v.detach()
    for i in range(5):
        w_i = u @ torch.diag(sigma[i]) @ v.T  # eq. 7
        torch.testing.assert_close(out[i].detach(), x[i] * (w_i @ x0[i]) + x[i], atol=1e-5, rtol=0)


class _ShapeRecorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.numels: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numels.append(t.numel())
        return out


@pytest.mark.parametrize("cls", [DynamicWeightedPIN, DynamicGeneratedPIN])
def test_dynamic_layers_never_build_a_batch_of_rxr_matrices(cls):
    layer = cls(rows=7, in_dim=14, reduction=2, rank=2)
    x, x0 = _rand_x0(dtype=torch.float32)
    x.requires_grad_(True)
    with _ShapeRecorder() as rec:
        out, pen = layer(x, x0)
        (out.sum() + pen).backward()
    assert rec.numels and max(rec.numels) < 5 * 7 * 7  # B K R d = 140 at most; B R R would be 245


@pytest.mark.parametrize("variant", ["da", "dgp", "dwp"])
def test_no_gradient_reaches_x0_through_the_dynamic_part(variant):
    torch.manual_seed(4)
    layer = {"da": DynamicActivationPIN, "dgp": DynamicGeneratedPIN, "dwp": DynamicWeightedPIN}[variant](
        rows=7, in_dim=14, reduction=2, rank=3).double()
    net = {"da": "gate_net", "dgp": "sigma_net", "dwp": "pair_net"}[variant]
    _randomise_last(getattr(layer, net))  # a zero last layer would pass no gradient anyway
    _, x0 = _rand_x0()
    x0.requires_grad_(True)
    dyn = (layer.gate(x0) if variant == "da" else layer.sigma(x0) if variant == "dgp"
           else torch.cat(layer.pairs(x0), 1))
    assert torch.autograd.grad(dyn.sum(), x0, allow_unused=True) == (None,)
    # Whole layer (x = x0, as in the first layer): its gradient equals that of the same layer with the
    # dynamic quantities frozen as constants, i.e. only the interaction path carries gradient.
    out, _ = layer(x0, x0)
    grad = torch.autograd.grad(out.sum(), x0)[0]
    x0c = x0.detach().clone().requires_grad_(True)
    if variant == "da":
        ref = x0c * (layer.weight @ x0c) * layer.gate(x0).detach()[..., None] + x0c
    elif variant == "dgp":
        w = layer.u @ torch.diag_embed(layer.sigma(x0).detach()) @ layer.v.T  # [B, R, R] (test only)
        ref = x0c * (w @ x0c) + x0c
    else:
        u, v = (t.detach() for t in layer.pairs(x0))
        ref = x0c * ((torch.einsum("bpa,bpc->bac", u, v) * layer.weight) @ x0c) + x0c
    ref_grad = torch.autograd.grad(ref.sum(), x0c)[0]
    assert grad.abs().sum() > 0
    torch.testing.assert_close(grad, ref_grad, atol=1e-10, rtol=1e-10)


def test_orthogonal_penalty_by_hand():
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    assert float(orthogonal_penalty(q.T[:4] * torch.tensor([[2.0], [0.5], [3.0], [1.0]]))) == pytest.approx(0, abs=1e-6)
    two = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert float(orthogonal_penalty(two)) == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    # e1, e1 + e2, -e1: |cos| = 1/sqrt2, 1, 1/sqrt2 -> 1 + sqrt2
    three = torch.tensor([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    assert float(orthogonal_penalty(three)) == pytest.approx(1 + math.sqrt(2), rel=1e-6)


def test_model_regularization_weights_the_penalty_by_orth_rate():
    model = DynIntModel(replace(SMALL, variant="dgp", rank=2))
    rows = model.rows
    with torch.no_grad():
        for layer in model.pin:  # U columns e1 and e1 + e2 (|cos| = 1/sqrt2), V columns orthogonal
            layer.u.zero_()
            layer.u[0, :] = 1.0
            layer.u[1, 1] = 1.0
            layer.v.zero_()
            layer.v[2, 0] = 1.0
            layer.v[3, 1] = -4.0
    model(make_batch(3, AD_ONLY))
    assert float(model.regularization().detach()) == pytest.approx(1e-2 * 2 / math.sqrt(2), rel=1e-5)  # 2 layers

    dwp = DynIntModel(replace(SMALL, variant="dwp", rank=2))
    with torch.no_grad():  # generated vectors = bias + 1/sqrt(K): make u_p, v_p the orthogonal e_p
        for layer in dwp.pin:
            layer.pair_net[-1].weight.zero_()
            target = torch.zeros(2, 2, rows)
            target[:, 0, 0] = 1.0
            target[:, 1, 1] = 1.0
            layer.pair_net[-1].bias.copy_(target.flatten() - 2 ** -0.5)
    dwp(make_batch(3, AD_ONLY))
    assert float(dwp.regularization().detach()) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("variant", ["xdeepint", "da", "dgp", "dwp"])
@pytest.mark.parametrize("columns", [AD_REDUCED, AD_ONLY, ()], ids=["ad_reduced", "ad", "none"])
def test_inference_skips_absent_fields_with_the_same_logits(variant, columns):
    """At inference a batch's absent fields are skipped; the logits equal the full computation on X_0 with
    those fields' zero rows (float64, generators randomised so that every dynamic part matters)."""
    torch.manual_seed(3)
    model = DynIntModel(replace(SMALL, variant=variant)).double()
    for layer in model.pin:
        for net in ("gate_net", "sigma_net", "pair_net"):
            if hasattr(layer, net):
                _randomise_last(getattr(layer, net))
    model.eval()
    batch = make_batch(9, columns, seed=4)
    with torch.no_grad():
        full = model.forward_embedded(model.embedding(batch))  # every row computed
        skipped = model(batch)
    torch.testing.assert_close(skipped, full, rtol=1e-10, atol=1e-10)
    model.train()
    with torch.no_grad():  # training computes every row: the same logits
        torch.testing.assert_close(model(batch), full, rtol=1e-10, atol=1e-10)


def test_inference_flops_count_only_the_present_fields_rows_by_hand():
    """xDeepInt: each PIN layer's W X_0 is 2 S^2 d FLOPs per example, with S = h x (present fields) rows,
    against R = h x F when every field is present (flop_counter counts matmuls; eq. 2's output and the rest
    are elementwise)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = DynIntModel(SMALL).eval()  # h = 2, d = 4, 2 layers
    h, d, layers = 2, 4, 2
    for columns, n_present in ((ALL_SEQ_COLUMNS, len(FIELD_COLUMNS)), (AD_REDUCED, len(TARGET_COLUMNS) + 7),
                               ((), len(TARGET_COLUMNS))):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(make_batch(5, columns))
        s = h * n_present
        assert counter.get_total_flops() / 5 == layers * 2 * s * s * d, columns


@pytest.mark.parametrize("variant", ["xdeepint", "da", "dgp", "dwp"])
def test_each_variant_fits_a_tiny_signal(variant):
    torch.manual_seed(5)
    model = DynIntModel(replace(SMALL, variant=variant, orth_rate=1e-4))
    batch = make_batch(64, AD_ONLY, seed=5)
    batch.label = (batch.targets["tgt_ad_id"] % 97 % 2).float()  # learnable from one field
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    first = float(loss_fn(model(batch), batch.label).detach())
    for _ in range(40):
        loss = loss_fn(model(batch), batch.label) + model.regularization()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert float(loss_fn(model(batch), batch.label).detach()) < 0.5 * first


# ---------------------------------------------------------------------------------------------- metrics

def test_log_loss_and_ne_by_hand():
    y, p = [1, 0, 1, 0], [0.8, 0.4, 0.6, 0.2]
    # -(ln .8 + ln .6 + ln .6 + ln .8) / 4 = -(ln .8 + ln .6) / 2 = (0.2231436 + 0.5108256) / 2
    assert log_loss(y, p) == pytest.approx(0.3669846, abs=1e-6)
    assert normalized_entropy(y, p) == pytest.approx(0.3669846 / 0.6931472, abs=1e-6)  # p^ = .5: H = ln 2
    # p^ = 1/4: predicting the base rate scores NE = 1; H(1/4) = .25 ln 4 + .75 ln(4/3) = 0.5623351
    assert normalized_entropy([1, 0, 0, 0], [0.25] * 4) == pytest.approx(1.0, abs=1e-9)
    # -(ln .5 + 3 ln .75) / 4 = (0.6931472 + 0.8630462) / 4 = 0.3890483
    assert normalized_entropy([1, 0, 0, 0], [0.5, 0.25, 0.25, 0.25]) == pytest.approx(0.3890483 / 0.5623351, abs=1e-6)
    assert math.isnan(normalized_entropy([0, 0], [0.1, 0.2]))


def test_auc_by_hand_and_by_brute_force_pairs():
    assert auc([1, 0, 1, 0], [0.8, 0.4, 0.6, 0.2]) == 1.0
    assert auc([1, 0, 1, 0], [0.2, 0.4, 0.1, 0.9]) == 0.0
    # pos {.5, .3, .9} vs neg {.5, .3}: tie .5, win, loss, tie .5, win, win -> 4 / 6
    assert auc([1, 0, 1, 0, 1], [0.5, 0.5, 0.3, 0.3, 0.9]) == pytest.approx(4 / 6)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = rng.integers(0, 20, 300) / 20.0  # many ties
    pos, neg = p[y == 1], p[y == 0]
    brute = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg))
    assert auc(y, p) == pytest.approx(brute, abs=1e-12)
    assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_binary_metrics_streams_and_merges():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200).astype(float)
    p = rng.uniform(0.01, 0.99, 200)
    whole = BinaryMetrics()
    whole.update(torch.tensor(y[:70], dtype=torch.float32), torch.tensor(p[:70], dtype=torch.float64))
    whole.update(y[70:], p[70:])
    a, b = BinaryMetrics(), BinaryMetrics()
    a.update(y[:120], p[:120])
    b.update(y[120:], p[120:])
    merged = a.merge(b).compute()
    got = whole.compute()
    assert got["n"] == merged["n"] == 200
    for key, want in [("log_loss", log_loss(y, p)), ("ne", normalized_entropy(y, p)), ("auc", auc(y, p)),
                      ("base_rate", y.mean()), ("calibration", p.mean() / y.mean())]:
        assert got[key] == pytest.approx(want, rel=1e-9), key
        assert merged[key] == pytest.approx(want, rel=1e-9), key
    np.testing.assert_allclose(whole.sums()[:2], [200, y.sum()])
    whole.reset()
    assert whole.compute()["n"] == 0 and math.isnan(whole.compute()["ne"])


def _gather_worker(rank: int, world: int, port: int, y: np.ndarray, p: np.ndarray, out) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        m = BinaryMetrics()
        m.update(y[rank::world], p[rank::world])  # each rank sees its own shard
        out.put((rank, m.all_gather().compute()))
    finally:
        dist.destroy_process_group()


def test_binary_metrics_all_gather_over_two_gloo_processes():
    import socket

    import torch.multiprocessing as mp

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 101).astype(float)
    p = rng.uniform(0.01, 0.99, 101)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    mp.start_processes(_gather_worker, args=(2, port, y, p, out), nprocs=2, join=True, start_method="spawn")
    results = dict(out.get(timeout=30) for _ in range(2))
    for r in (0, 1):
        assert results[r]["n"] == 101
        assert results[r]["ne"] == pytest.approx(normalized_entropy(y, p), rel=1e-12)
        assert results[r]["auc"] == pytest.approx(auc(y, p), rel=1e-12)
