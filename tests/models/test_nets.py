"""The nets: full-catalogue scores against pairwise scores, specs, checkpoints, pretrained NeuMF."""

from __future__ import annotations

import itertools
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.models import EASE, GMF, IALS, MF, MLP, NeuMF, Popularity, RecommenderNet, ncf
from recsys.models.checkpoint import CheckpointError, build_net, load_net
from recsys.training.loss import bpr_loss, softmax_loss, triplets

N_USERS, N_ITEMS = 7, 23

FACTORIES = {
    "mf": lambda: MF(N_USERS, N_ITEMS, embedding_dim=5, init_std=0.5),
    "mf_nobias": lambda: MF(N_USERS, N_ITEMS, embedding_dim=4, item_bias=False, init_std=0.5),
    "gmf": lambda: GMF(N_USERS, N_ITEMS, embedding_dim=6, init_std=0.5),
    "mlp": lambda: MLP(N_USERS, N_ITEMS, embedding_dim=4, layers=(8, 6, 3), init_std=0.5),
    "mlp_one_layer": lambda: MLP(N_USERS, N_ITEMS, embedding_dim=3, layers=[5], init_std=0.5),
    "mlp_dropout": lambda: MLP(N_USERS, N_ITEMS, 4, layers=(8, 4), dropout=0.5, init_std=0.5),
    "neumf": lambda: NeuMF(N_USERS, N_ITEMS, 5, 4, layers=(8, 6, 3), dropout=0.3, init_std=0.5),
    "pop": lambda: _fitted_popularity(),
    "ease": lambda: _solved(EASE(N_USERS, N_ITEMS, l2_reg=2.0)),
    "ials": lambda: _solved(IALS(N_USERS, N_ITEMS, embedding_dim=4, alpha=3.0, l2_reg=0.5)),
}
NEURAL = ["mlp", "mlp_one_layer", "mlp_dropout", "neumf"]
SOLVED = ["pop", "ease", "ials"]  # fitted by `solve`, no gradients


def _solved(net: RecommenderNet, sweeps: int = 2) -> RecommenderNet:
    g = torch.Generator().manual_seed(11)
    users, items = (
        torch.randint(N_USERS, (60,), generator=g),
        torch.randint(N_ITEMS, (60,), generator=g),
    )
    for _ in range(sweeps):
        net.solve(users, items)
    return net


def _fitted_popularity() -> Popularity:
    net = Popularity(N_USERS, N_ITEMS)
    net.fit(torch.randint(N_ITEMS, (200,), generator=torch.Generator().manual_seed(3)))
    return net


def make(name: str, dtype: torch.dtype = torch.float64) -> RecommenderNet:
    """A net in eval mode with random (not freshly-initialised) weights, so every path matters."""
    torch.manual_seed(sum(map(ord, name)))
    net = FACTORIES[name]()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # biases and heads start at 0/1: move them
    return net.to(dtype).eval()


def pairwise(net: RecommenderNet, users: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """score_items computed the slow way: one `score` call per (user, item) pair."""
    items = torch.arange(start, stop)
    u = users.repeat_interleave(items.numel())
    i = items.repeat(users.numel())
    return net.score(u, i).view(users.numel(), items.numel())


ALL_USERS = torch.arange(N_USERS)
ODD_USERS = torch.tensor([3, 0, 3, 6])  # unsorted, repeated


@pytest.fixture(params=[None, 1, 7, 40, 1000], ids=lambda v: f"block={v}")
def small_blocks(request, monkeypatch):
    """Force the blocked / chunked paths through several blocks (None: the shipped sizes)."""
    if request.param is not None:
        monkeypatch.setattr(ncf, "BLOCK_ACTIVATIONS", request.param)
        monkeypatch.setattr(ncf, "PAIR_BUDGET", request.param)
    return request.param


@pytest.mark.parametrize("name", list(FACTORIES))
@pytest.mark.parametrize("users", [ALL_USERS, ODD_USERS], ids=["all", "odd"])
def test_score_items_matches_pairwise_no_grad(name, users, small_blocks):
    net = make(name)
    with torch.no_grad():
        want = pairwise(net, users, 0, N_ITEMS)
        got = net.score_items(users)
        assert got.shape == (users.numel(), N_ITEMS)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        for start, stop in [(0, 1), (5, 6), (3, 17), (10, N_ITEMS), (4, 4)]:
            sub = net.score_items(users, start, stop)
            assert sub.shape == (users.numel(), stop - start)
            torch.testing.assert_close(sub, want[:, start:stop], rtol=1e-12, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(NEURAL),
    block=st.integers(1, 200),
    users=st.lists(st.integers(0, N_USERS - 1), min_size=1, max_size=9),
    bounds=st.tuples(st.integers(0, N_ITEMS), st.integers(0, N_ITEMS)).map(sorted),
)
def test_blocked_inference_any_block_size(name, block, users, bounds):
    net = make(name)
    start, stop = bounds
    users = torch.tensor(users)
    old = ncf.BLOCK_ACTIVATIONS
    ncf.BLOCK_ACTIVATIONS = block
    try:
        with torch.no_grad():
            got = net.score_items(users, start, stop)
            want = pairwise(net, users, start, stop)
    finally:
        ncf.BLOCK_ACTIVATIONS = old
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in FACTORIES if n not in SOLVED])
def test_score_items_autograd_matches_pairwise_values_and_gradients(name, small_blocks):
    net = make(name)
    users = ODD_USERS
    weights = torch.randn(users.numel(), 15, dtype=torch.float64)  # a non-trivial upstream grad

    got = net.score_items(users, 4, 19)
    assert got.requires_grad
    (got * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters()}
    net.zero_grad()
    want = pairwise(net, users, 4, 19)
    (want * weights).sum().backward()

    torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-12, atol=1e-12)
    for n, p in net.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-10, atol=1e-12, msg=n)
    touched = [n for n, g in grads.items() if g.abs().sum() > 0]
    assert {n for n, _ in net.named_parameters() if "emb" in n} <= set(touched)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_float32_score_items_close_to_pairwise(name):
    net = make(name, torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(
            net.score_items(ALL_USERS), pairwise(net, ALL_USERS, 0, N_ITEMS), rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("name", list(FACTORIES))
def test_spec_round_trips_through_build_net(name):
    net = make(name, torch.float32)
    spec = net.spec()
    assert spec["_target_"].startswith("recsys.models.")
    assert _only_builtins(spec)
    rebuilt = build_net(spec)
    assert type(rebuilt) is type(net)
    assert rebuilt.spec() == spec
    rebuilt.load_state_dict(net.state_dict())  # strict: same names and shapes
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.score_items(ALL_USERS), net.score_items(ALL_USERS))


def _only_builtins(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _only_builtins(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_only_builtins(v) for v in value)
    return value is None or isinstance(value, bool | int | float | str)


def _sq(weight: torch.Tensor, rows: torch.Tensor) -> float:
    return sum(float((weight[int(r)] ** 2).sum()) for r in rows)


@pytest.mark.parametrize("name", list(FACTORIES))
def test_train_scores_norms_are_squared_norms_of_the_touched_rows(name):
    net = make(name)
    users = torch.tensor([0, 2, 2, 6])
    items = torch.tensor([[1, 3, 4], [1, 0, 0], [5, 9, 8], [22, 9, 2]])
    user_tables: list[torch.Tensor] = []
    item_tables: list[torch.Tensor] = []
    if isinstance(net, MF | GMF):
        user_tables, item_tables = [net.user_emb.weight], [net.item_emb.weight]
    elif isinstance(net, MLP):
        user_tables, item_tables = [net.mlp.user_emb.weight], [net.mlp.item_emb.weight]
    elif isinstance(net, NeuMF):
        user_tables = [net.gmf_user.weight, net.mlp.user_emb.weight]
        item_tables = [net.gmf_item.weight, net.mlp.item_emb.weight]
    out = net.train_scores(users, items)
    assert out.scores.shape == out.item_sq.shape == (4, 3) and out.user_sq.shape == (4,)
    for got, index, tables in (
        (out.user_sq, users, user_tables),
        (out.item_sq, items, item_tables),
    ):
        want = [sum(_sq(w.detach(), [r]) for w in tables) for r in index.flatten().tolist()]
        assert got.detach().flatten().tolist() == pytest.approx(want, rel=1e-6, abs=0)
    if user_tables and net.trainable:  # a penalty to train with: gradients reach touched rows only
        out.user_sq.sum().backward()
        weight = user_tables[0]
        assert set(torch.nonzero(weight.grad.abs().sum(1)).flatten().tolist()) == {0, 2, 6}


# --- checkpoints -----------------------------------------------------------------------------


def save_ckpt(net: RecommenderNet, path: Path) -> Path:
    torch.save({"recsys": {"net": net.spec(), "data": {}}, "state_dict": net.state_dict()}, path)
    return path


@pytest.mark.parametrize("name", list(FACTORIES))
def test_load_net_restores_weights_in_eval_mode(name, tmp_path):
    net = make(name, torch.float32)
    loaded, meta = load_net(save_ckpt(net, tmp_path / "n.ckpt"))
    assert type(loaded) is type(net) and not loaded.training
    assert meta["net"] == net.spec()
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_items(ALL_USERS), net.score_items(ALL_USERS))


def test_load_net_accepts_lightning_style_state_dict(tmp_path):
    net = make("gmf", torch.float32)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    state["val_metrics.n_users"] = torch.tensor(3)  # other module state next to the net
    path = tmp_path / "l.ckpt"
    torch.save({"recsys": {"net": net.spec(), "data": {}}, "state_dict": state}, path)
    loaded, _ = load_net(path)
    torch.testing.assert_close(loaded.user_emb.weight, net.user_emb.weight)


@pytest.mark.parametrize(
    "target",
    [
        "os.system",
        "builtins.dict",
        "recsys.data.io.atomic_file",
        "torch.nn.Linear",
        "recsys.models.checkpoint.CheckpointError",
        "recsys.models.ncf.torch",
        "recsys.models.no_such_module.Net",
        "recsys.models.ncf.NoSuchNet",
        "",
    ],
)
def test_load_net_refuses_foreign_targets(target, tmp_path):
    net = make("mf", torch.float32)
    spec = {**net.spec(), "_target_": target}
    path = tmp_path / "evil.ckpt"
    torch.save({"recsys": {"net": spec, "data": {}}, "state_dict": net.state_dict()}, path)
    with pytest.raises(CheckpointError, match="not a recsys"):
        load_net(path)


class Payload:
    """A custom object: unpickling it would run code (here: create a marker file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_load_net_refuses_pickled_objects(tmp_path):
    net = make("mf", torch.float32)
    marker = tmp_path / "pwned"
    path = tmp_path / "pickle.ckpt"
    ckpt = {"recsys": {"net": net.spec(), "data": {"x": Payload(marker)}}}
    torch.save({**ckpt, "state_dict": net.state_dict()}, path)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_net(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    "content",
    [b"", b"hello, not a checkpoint\n", b"PK\x03\x04garbage", pickle.dumps({"recsys": 1})],
    ids=["empty", "text", "bad-zip", "plain-pickle"],
)
def test_load_net_refuses_non_checkpoint_files(content, tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_net(path)


@pytest.mark.parametrize(
    "payload", [torch.zeros(3), {"state_dict": {}}, {"recsys": {}}, [1, 2]], ids=str
)
def test_load_net_refuses_torch_files_that_are_not_recsys_checkpoints(payload, tmp_path):
    path = tmp_path / "t.ckpt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="not a recsys checkpoint"):
        load_net(path)


def test_load_net_refuses_missing_file_and_directory(tmp_path):
    for path in (tmp_path / "absent.ckpt", tmp_path):
        with pytest.raises(CheckpointError, match="does not exist"):
            load_net(path)


# --- NeuMF from pretrained GMF and MLP ------------------------------------------------------


@pytest.fixture
def pretrained(tmp_path):
    gmf, mlp = make("gmf", torch.float32), make("mlp", torch.float32)
    return gmf, mlp, save_ckpt(gmf, tmp_path / "gmf.ckpt"), save_ckpt(mlp, tmp_path / "mlp.ckpt")


def neumf_like(gmf: GMF, mlp: MLP, **kwargs) -> NeuMF:
    args = dict(gmf_dim=gmf.embedding_dim, mlp_dim=mlp.embedding_dim, layers=mlp.layers)
    return NeuMF(gmf.n_users, gmf.n_items, **{**args, **kwargs}).eval()


@pytest.mark.parametrize("alpha", [0.5, 0.2, 1.0, 0.0])
def test_neumf_from_pretrained_is_alpha_mix(pretrained, alpha, small_blocks):
    gmf, mlp, gmf_path, mlp_path = pretrained
    paths = dict(pretrained_gmf=str(gmf_path), pretrained_mlp=str(mlp_path))
    net = neumf_like(gmf, mlp, **paths, alpha=alpha)
    with torch.no_grad():
        want = alpha * gmf.score_items(ALL_USERS) + (1 - alpha) * mlp.score_items(ALL_USERS)
        # float32 nets: alpha * h rounds once, hence a float32-sized tolerance
        torch.testing.assert_close(net.score_items(ALL_USERS), want, rtol=1e-5, atol=1e-7)
        u, i = torch.tensor([0, 6, 3]), torch.tensor([22, 0, 9])
        mix = alpha * gmf.score(u, i) + (1 - alpha) * mlp.score(u, i)
        torch.testing.assert_close(net.score(u, i), mix, rtol=1e-5, atol=1e-7)


def test_neumf_checkpoint_does_not_need_the_pretrained_files(pretrained, tmp_path):
    gmf, mlp, gmf_path, mlp_path = pretrained
    net = neumf_like(gmf, mlp, pretrained_gmf=str(gmf_path), pretrained_mlp=str(mlp_path))
    path = save_ckpt(net, tmp_path / "neumf.ckpt")
    gmf_path.unlink()
    mlp_path.unlink()
    loaded, _ = load_net(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_items(ALL_USERS), net.score_items(ALL_USERS))


def test_neumf_from_gmf_only_copies_the_gmf_tower(pretrained):
    gmf, mlp, gmf_path, _ = pretrained
    net = neumf_like(gmf, mlp, pretrained_gmf=str(gmf_path))
    torch.testing.assert_close(net.gmf_user.weight, gmf.user_emb.weight)
    torch.testing.assert_close(net.gmf_item.weight, gmf.item_emb.weight)
    torch.testing.assert_close(net.gmf_head, gmf.head.weight[0])


def test_neumf_refuses_wrong_class(pretrained):
    gmf, mlp, gmf_path, mlp_path = pretrained
    with pytest.raises(ValueError, match="expected a GMF checkpoint, got MLP"):
        neumf_like(gmf, mlp, pretrained_gmf=str(mlp_path))
    with pytest.raises(ValueError, match="expected a MLP checkpoint, got GMF"):
        neumf_like(gmf, mlp, pretrained_mlp=str(gmf_path))


def test_neumf_refuses_other_catalogue_sizes(pretrained):
    _, _, gmf_path, mlp_path = pretrained
    for kind, path in (("gmf", gmf_path), ("mlp", mlp_path)):
        with pytest.raises(ValueError, match=rf"{N_USERS} users x {N_ITEMS} items.*8 x {N_ITEMS}"):
            NeuMF(8, N_ITEMS, 6, 4, layers=(8, 6, 3), **{f"pretrained_{kind}": str(path)})
        with pytest.raises(ValueError, match=rf"{N_ITEMS} items.*{N_USERS} x 30"):
            NeuMF(N_USERS, 30, 6, 4, layers=(8, 6, 3), **{f"pretrained_{kind}": str(path)})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pretrained": "gmf", "gmf_dim": 5},
        {"pretrained": "mlp", "mlp_dim": 5},
        {"pretrained": "mlp", "layers": (8, 6, 4)},
        {"pretrained": "mlp", "layers": (8, 6)},
    ],
    ids=str,
)
def test_neumf_refuses_other_embedding_or_layer_sizes(pretrained, kwargs):
    gmf, mlp, gmf_path, mlp_path = pretrained
    kwargs = dict(kwargs)
    path = {"gmf": gmf_path, "mlp": mlp_path}[kwargs.pop("pretrained")]
    kind = "gmf" if path == gmf_path else "mlp"
    with pytest.raises(ValueError, match=r"pretrained (GMF|MLP) has \{'embedding_dim'"):
        neumf_like(gmf, mlp, **{f"pretrained_{kind}": str(path)}, **kwargs)


def test_neumf_refuses_a_missing_pretrained_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        NeuMF(N_USERS, N_ITEMS, pretrained_gmf=str(tmp_path / "nope.ckpt"))


# --- Popularity ------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    n_items=st.integers(1, 12),
    data=st.data(),
)
def test_popularity_ranks_by_train_count(n_items, data):
    items = data.draw(st.lists(st.integers(0, n_items - 1), max_size=40))
    net = Popularity(3, n_items)
    net.fit(torch.tensor(items, dtype=torch.int32))
    counts = [items.count(i) for i in range(n_items)]
    assert net.counts.floor().long().tolist() == counts
    with torch.no_grad():
        scores = net.score_items(torch.tensor([0, 2]))
    assert scores.shape == (2, n_items)
    order = torch.argsort(scores[1], descending=True, stable=True).tolist()
    assert order == sorted(range(n_items), key=lambda i: (-counts[i], i))
    torch.testing.assert_close(scores[0], scores[1])
    u, i = torch.zeros(n_items, dtype=torch.long), torch.arange(n_items)
    torch.testing.assert_close(net.score(u, i), scores[0])
    assert not net.trainable
    out = net.train_scores(u, i[:, None])
    assert float(out.user_sq.abs().sum() + out.item_sq.abs().sum()) == 0.0


def test_recommender_needs_users_and_items():
    with pytest.raises(ValueError, match="at least one user and one item"):
        MF(0, 5)
    with pytest.raises(ValueError, match="at least one layer"):
        MLP(3, 5, layers=[])


def train_steps(net: RecommenderNet, steps: int = 3, dtype: torch.dtype = torch.float32) -> None:
    """A few Adam steps of the BPR loss on random batches."""
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    for _ in range(steps):
        users, items = torch.randint(20, (16,)), torch.randint(30, (16, 3))
        optimizer.zero_grad()
        loss, reg = bpr_loss(net, users, items)
        (loss.to(dtype) + reg).backward()
        optimizer.step()


def test_neumf_fixed_gmf_head_stays_ones_while_the_rest_learns():
    torch.manual_seed(0)
    net = NeuMF(20, 30, gmf_dim=4, mlp_dim=4, layers=[4], learn_gmf_head=False)
    before = net.mlp_head.detach().clone()
    train_steps(net)
    assert torch.equal(net.gmf_head, torch.ones(4))
    assert not torch.equal(net.mlp_head, before)
    rebuilt = build_net(net.spec())
    assert rebuilt.learn_gmf_head is False


@pytest.mark.parametrize("move", ["to_float64_new_params", "load_state_dict_assign", "deepcopy"])
def test_neumf_fixed_gmf_head_survives_moves_that_replace_the_parameters(move):
    """What `.to("cuda")` does to a net: new tensors for its weights. A gradient hook or a
    captured mask stays behind with the old tensors (recsys 0.1 crashed on CUDA that way);
    a buffer moves with the net. The CPU stand-ins below replace every parameter tensor."""
    torch.manual_seed(0)
    net = NeuMF(20, 30, gmf_dim=4, mlp_dim=4, layers=[4], learn_gmf_head=False)
    dtype = torch.float32
    if move == "to_float64_new_params":
        overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        try:
            net, dtype = net.to(torch.float64), torch.float64
        finally:
            torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
    elif move == "load_state_dict_assign":
        fresh = NeuMF(20, 30, gmf_dim=4, mlp_dim=4, layers=[4], learn_gmf_head=False)
        fresh.load_state_dict({k: v.clone() for k, v in net.state_dict().items()}, assign=True)
        net = fresh
    else:
        net = __import__("copy").deepcopy(net)
    train_steps(net, dtype=dtype)
    assert torch.equal(net.gmf_head, torch.ones(4, dtype=dtype))
    assert "gmf_head" in dict(net.named_buffers())
    assert all(not p._backward_hooks for p in net.parameters())  # nothing left to go stale


def test_neumf_learned_gmf_head_learns():
    torch.manual_seed(0)
    net = NeuMF(20, 30, gmf_dim=4, mlp_dim=4, layers=[4], learn_gmf_head=True)
    train_steps(net)
    assert not torch.equal(net.gmf_head.detach(), torch.ones(4))


@pytest.mark.parametrize("learn_gmf_head", [True, False])
def test_neumf_loads_a_fused_head_checkpoint(learn_gmf_head):
    """recsys 0.1 saved the head as one `head.weight` [1, gmf_dim + last]."""
    net = make("neumf")
    state = net.state_dict()
    fused = torch.cat([state.pop("gmf_head"), state.pop("mlp_head")])[None]
    state["head.weight"] = fused
    kwargs = {**net.spec(), "learn_gmf_head": learn_gmf_head}
    loaded = build_net(kwargs).to(torch.float64).eval()
    loaded.load_state_dict(state)
    torch.testing.assert_close(loaded.gmf_head, fused[0, :5])
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_items(ALL_USERS), net.score_items(ALL_USERS))


@pytest.mark.parametrize("name", [n for n in FACTORIES if n != "pop"])
def test_train_scores_match_pairwise_scores(name):
    """The fused training forward pass (one lookup per table, each user's side computed once
    per row of items) equals scoring every (user, item) pair on its own."""
    net = make(name)
    g = torch.Generator().manual_seed(5)
    users = torch.randint(N_USERS, (40,), generator=g)
    items = torch.randint(N_ITEMS, (40, 5), generator=g)
    with torch.no_grad():
        out = net.train_scores(users, items)
        want = net.score(users.repeat_interleave(5), items.flatten()).view(40, 5)
    torch.testing.assert_close(out.scores, want)


@pytest.mark.parametrize("k", [1, 3])
def test_bpr_loss_equals_the_loss_over_separate_triplets(k):
    """Grouping negatives by positive changes nothing: the loss and the L2 per triplet are
    those of the k triplets (u, i, j) scored and penalised one by one."""
    net = make("mf")
    g = torch.Generator().manual_seed(2)
    users = torch.randint(N_USERS, (12,), generator=g)
    items = torch.randint(N_ITEMS, (12, 1 + k), generator=g)
    with torch.no_grad():
        loss, reg = bpr_loss(net, users, items)
    u = users.repeat_interleave(k)
    pos, neg = items[:, :1].expand(-1, k).flatten(), items[:, 1:].flatten()
    with torch.no_grad():
        diff = net.score(u, pos) - net.score(u, neg)
    want_loss = -torch.log(torch.sigmoid(diff)).mean()
    w_u, w_i = net.user_emb.weight.detach(), net.item_emb.weight.detach()
    want_reg = (w_u[u].pow(2).sum() + w_i[pos].pow(2).sum() + w_i[neg].pow(2).sum()) / (12 * k)
    torch.testing.assert_close(loss, want_loss)
    torch.testing.assert_close(reg, want_reg)
    assert triplets(items) == 12 * k


def test_row_dropout_shares_one_mask_across_a_rows_items():
    """On a training group [P, M, H] a unit is dropped for the whole row (a user's positive
    and its negatives alike), kept units are scaled by 1 / (1 - p); 2-D input and eval mode
    get torch's own dropout and the identity."""
    drop = ncf.RowDropout(0.5)
    x = torch.rand(64, 5, 8) + 0.5  # no zeros, so a zero is a dropped unit
    torch.manual_seed(0)
    y = drop(x)
    dropped = y == 0
    assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))  # same mask down M
    assert 0.3 < dropped[:, 0].float().mean() < 0.7
    torch.testing.assert_close(y[~dropped], (x * 2)[~dropped])
    flat = drop(x[:, 0])
    assert flat.shape == (64, 8) and not torch.equal((flat == 0)[:32], (flat == 0)[32:])
    drop.eval()
    assert torch.equal(drop(x), x)


def test_softmax_loss_is_cross_entropy_of_the_positive_against_its_negatives():
    net = make("neumf")
    g = torch.Generator().manual_seed(4)
    users = torch.randint(N_USERS, (9,), generator=g)
    items = torch.randint(N_ITEMS, (9, 4), generator=g)
    with torch.no_grad():
        loss, reg = softmax_loss(net, users, items)
        scores = net.score(users.repeat_interleave(4), items.flatten()).view(9, 4)
        _, bpr_reg = bpr_loss(net, users, items)
    want = -(scores[:, 0].exp() / scores.exp().sum(1)).log().mean()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(reg, bpr_reg)  # the same L2 term per triplet


def test_softmax_log_q_correction_shifts_only_the_negatives():
    """With popularity draws each negative's logit drops by log(n q(j)): the loss is the cross
    entropy of the corrected logits; a zero correction is the uniform loss."""
    net = make("mf")
    g = torch.Generator().manual_seed(5)
    users = torch.randint(N_USERS, (7,), generator=g)
    items = torch.randint(N_ITEMS, (7, 5), generator=g)
    log_q = torch.randn(7, 4, generator=g)
    with torch.no_grad():
        loss, _ = softmax_loss(net, users, items, log_q)
        uniform, _ = softmax_loss(net, users, items)
        zero, _ = softmax_loss(net, users, items, torch.zeros(7, 4))
        scores = net.score(users.repeat_interleave(5), items.flatten()).view(7, 5)
    corrected = torch.cat([scores[:, :1], scores[:, 1:] - log_q], 1)
    want = -(corrected[:, 0].exp() / corrected.exp().sum(1)).log().mean()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(zero, uniform)


# --- EASE and iALS ---------------------------------------------------------------------------


def _random_interactions(n_users: int, n_items: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(n_users, (n,), generator=g), torch.randint(n_items, (n,), generator=g)


def test_ease_equals_the_closed_form():
    """B = I - P diag(1/diag P), P = (X^T X + lambda I)^-1, scores X B (Steck, 2019), in float64
    with numpy-free torch linear algebra on the dense matrix; duplicates count once."""
    users, items = _random_interactions(9, 13, 70, seed=2)
    net = EASE(9, 13, l2_reg=3.0)
    net.solve(users, items)
    x = torch.zeros(9, 13, dtype=torch.float64)
    x[users, items] = 1.0
    p = torch.linalg.inv(x.T @ x + 3.0 * torch.eye(13, dtype=torch.float64))
    b = torch.eye(13, dtype=torch.float64) - p / torch.diagonal(p)[None, :]
    assert torch.diagonal(b).abs().max() < 1e-12
    torch.testing.assert_close(net.weights.double(), b, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        net.score_items(torch.arange(9)).double(), x @ b, rtol=1e-4, atol=1e-5
    )
    assert net.n_history == int(x.sum()) and build_net(net.spec()).indices.numel() == net.n_history


def test_ease_refuses_a_catalogue_that_does_not_fit_before_allocating():
    with pytest.raises(MemoryError, match=r"EASE needs about .* for 10,000,000 items.*model=ials"):
        EASE(5, 10_000_000)


def _ials_objective(net: IALS, users, items) -> float:
    """Hu et al.'s loss: sum over all pairs of c_ui (p_ui - x_u.y_i)^2 + lambda (|X|^2 + |Y|^2)."""
    x, y = net.user_emb.weight.double(), net.item_emb.weight.double()
    p = torch.zeros(net.n_users, net.n_items, dtype=torch.float64)
    p[users, items] = 1.0
    c = 1.0 + net.alpha * p
    return float((c * (p - x @ y.T) ** 2).sum() + net.l2_reg * (x.pow(2).sum() + y.pow(2).sum()))


def test_ials_sweeps_never_increase_the_objective():
    users, items = _random_interactions(30, 20, 150, seed=4)
    net = IALS(30, 20, embedding_dim=6, alpha=5.0, l2_reg=0.3, init_std=0.1).double()
    losses = [_ials_objective(net, users, items)]
    for _ in range(6):
        net.solve(users, items)
        losses.append(_ials_objective(net, users, items))
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(losses)), losses
    assert losses[-1] < 0.5 * losses[0]


def test_ials_conjugate_gradient_solves_the_normal_equations():
    """With as many CG steps as dimensions the users' side is the exact least-squares solution
    (Y^T C_u Y + lambda I) x_u = Y^T C_u p_u, solved here user by user."""
    users, items = _random_interactions(12, 15, 60, seed=6)
    d = 5
    net = IALS(
        12, 15, embedding_dim=d, alpha=4.0, l2_reg=0.7, cg_steps=3 * d, init_std=0.3
    ).double()
    y = net.item_emb.weight.detach().clone()
    pairs = sorted(set(zip(users.tolist(), items.tolist(), strict=True)))
    rows = torch.tensor([u for u, _ in pairs])
    cols = torch.tensor([i for _, i in pairs])
    got = net._conjugate_gradient(net.user_emb.weight.detach(), y, rows, cols)
    for u in range(12):
        c = torch.ones(15, dtype=torch.float64)
        p = torch.zeros(15, dtype=torch.float64)
        seen = cols[rows == u]
        c[seen], p[seen] = 1.0 + 4.0, 1.0
        a = y.T @ (c[:, None] * y) + 0.7 * torch.eye(d, dtype=torch.float64)
        want = torch.linalg.solve(a, y.T @ (c * p))
        torch.testing.assert_close(got[u], want, rtol=1e-8, atol=1e-10)


def test_ease_loads_a_solved_state_into_a_net_built_from_the_config():
    """Testing or resuming from a checkpoint builds EASE from the config (no history yet)."""
    solved = make("ease", torch.float32)
    fresh = EASE(N_USERS, N_ITEMS, l2_reg=2.0)
    fresh.load_state_dict(solved.state_dict())
    assert fresh.n_history == solved.n_history > 0
    torch.testing.assert_close(fresh.score_items(ALL_USERS), solved.score_items(ALL_USERS))


def test_ease_pair_scores_cost_the_history_not_the_catalogue():
    net = make("ease", torch.float64)
    users, items = torch.randint(N_USERS, (500,)), torch.randint(N_ITEMS, (500,))
    full = net.score_items(torch.arange(N_USERS))
    torch.testing.assert_close(net.score(users, items), full[users, items])
