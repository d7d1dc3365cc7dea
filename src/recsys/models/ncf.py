"""Neural Collaborative Filtering (He et al., 2017): GMF, MLP and their fusion NeuMF.

Full-catalogue scoring never builds per-pair MLP inputs: the first MLP layer is linear in
concat(p, q), so it splits into a user part and an item part computed once each; only the
layers after it run per pair, in item chunks that bound memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.base import RecommenderNet, TrainScores, group_rows, rows, sq_norms

# Training-time chunk budget for [users x items x first-layer width] activations (128 MiB).
PAIR_BUDGET = 32 * 1024 * 1024
# Inference block of first-layer activations (4 MiB): measured fastest on 2 cores (L2/L3-sized).
BLOCK_ACTIVATIONS = 1 << 20


class RowDropout(nn.Dropout):
    """Dropout that, on a training group [P, M, H] (a user against a positive and its
    negatives), draws one mask per row and shares it across the row's M items: the BPR
    difference s(u, i) - s(u, j) then compares two items through the same sub-network, and
    the step draws M times fewer random numbers (CPU dropout is RNG-bound). Any other input
    gets plain dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or not self.training or self.p == 0:
            return super().forward(x)
        keep = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p)
        return x * keep.div_(1 - self.p)


def _tower(in_dim: int, layers: Sequence[int], dropout: float) -> tuple[nn.Linear, nn.Sequential]:
    """The MLP tower: its first layer apart (it is split for full scoring) and the rest."""
    if not layers:
        raise ValueError("mlp layers must list at least one layer width")
    first = nn.Linear(in_dim, layers[0])
    rest: list[nn.Module] = []
    for width_in, width_out in itertools.pairwise(layers):
        rest += [nn.ReLU(), RowDropout(dropout), nn.Linear(width_in, width_out)]
    rest += [nn.ReLU(), RowDropout(dropout)]
    for layer in [first, *rest]:
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return first, nn.Sequential(*rest)


class _MLPPart(nn.Module):
    """Embeddings plus tower; `pairs` scores aligned pairs, `grid` users x an item range."""

    def __init__(self, n_users, n_items, embedding_dim, layers, dropout, init_std) -> None:
        super().__init__()
        self.user_emb = nn.Embedding(n_users, embedding_dim)
        self.item_emb = nn.Embedding(n_items, embedding_dim)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)
        self.first, self.rest = _tower(2 * embedding_dim, layers, dropout)
        self.embedding_dim = embedding_dim

    def pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.user_emb(users), self.item_emb(items)], dim=-1)
        return self.rest(self.first(x))

    def groups(
        self, users: torch.Tensor, items: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tower outputs for users [P] against items [P, M], [P, M, last], with the first
        layer's user half computed once per user, and the rows' squared norms [P], [P, M]."""
        d = self.embedding_dim
        u, q = rows(self.user_emb, users), group_rows(self.item_emb, items)
        user_part = F.linear(u, self.first.weight[:, :d], self.first.bias)  # [P, H]
        item_part = F.linear(q, self.first.weight[:, d:])  # [P, M, H]
        return self.rest(user_part[:, None, :] + item_part), sq_norms(u), sq_norms(q)

    def item_part(self) -> torch.Tensor:
        """The item half of the first layer for every item, [n_items, H]."""
        return self.item_emb.weight @ self.first.weight[:, self.embedding_dim :].T

    def grid(
        self,
        users: torch.Tensor,
        start: int,
        stop: int,
        head: torch.Tensor,
        item_part: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """head . tower(u, i) for all users x items start..stop-1, in cache-sized blocks;
        `item_part` is a precomputed `item_part()` (serving)."""
        d = self.embedding_dim
        user_part = self.user_emb(users) @ self.first.weight[:, :d].T + self.first.bias  # [B, H]
        if item_part is None:
            item_part = self.item_emb.weight[start:stop] @ self.first.weight[:, d:].T  # [C, H]
        else:
            item_part = item_part[start:stop]
        if torch.is_grad_enabled() and (user_part.requires_grad or item_part.requires_grad):
            return self._grid_autograd(user_part, item_part, head)
        return self._grid_blocked(user_part, item_part, head)

    def _grid_autograd(self, user_part, item_part, head) -> torch.Tensor:
        chunk = max(1, PAIR_BUDGET // max(1, user_part.shape[0] * user_part.shape[1]))
        out = [
            self.rest(user_part[:, None, :] + item_part[None, lo : lo + chunk, :]) @ head
            for lo in range(0, item_part.shape[0], chunk)
        ]
        return torch.cat(out, dim=1) if out else user_part.new_zeros(user_part.shape[0], 0)

    def _grid_blocked(self, user_part, item_part, head) -> torch.Tensor:
        """Inference: one reused buffer per block, in-place ReLU, addmm for the hidden layers
        (dropout is identity in eval), so each pair's activations stay in cache."""
        n_users, n_items, width = user_part.shape[0], item_part.shape[0], user_part.shape[1]
        hidden = [m for m in self.rest if isinstance(m, nn.Linear)]
        out = user_part.new_empty(n_users, n_items)
        items_per_block = max(1, min(n_items, BLOCK_ACTIVATIONS // width))
        users_per_block = max(1, BLOCK_ACTIVATIONS // (width * items_per_block))
        buf = user_part.new_empty(users_per_block * items_per_block * width)
        for u0 in range(0, n_users, users_per_block):
            nu = min(users_per_block, n_users - u0)
            for i0 in range(0, n_items, items_per_block):
                ni = min(items_per_block, n_items - i0)
                h = buf[: nu * ni * width].view(nu, ni, width)
                torch.add(user_part[u0 : u0 + nu, None, :], item_part[None, i0 : i0 + ni, :], out=h)
                x = h.view(-1, width).relu_()
                for layer in hidden:
                    x = torch.addmm(layer.bias, x, layer.weight.T).relu_()
                out[u0 : u0 + nu, i0 : i0 + ni] = (x @ head).view(nu, ni)
        return out


class GMF(RecommenderNet):
    """Generalized MF: a learned weighting h of the element-wise product p_u * q_i."""

    def __init__(
        self, n_users: int, n_items: int, embedding_dim: int = 64, init_std: float = 0.01
    ) -> None:
        super().__init__(n_users, n_items)
        self.embedding_dim = embedding_dim
        self.init_std = init_std
        self.user_emb = nn.Embedding(n_users, embedding_dim)
        self.item_emb = nn.Embedding(n_items, embedding_dim)
        self.head = nn.Linear(embedding_dim, 1, bias=False)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)
        nn.init.ones_(self.head.weight)  # starts as plain MF; the paper's random h only adds noise

    def score(self, users, items):
        return self.head(self.user_emb(users) * self.item_emb(items)).squeeze(-1)

    def score_items(self, users, start=0, stop=None, out=None):
        stop = self.n_items if stop is None else stop
        if self.frozen_items:
            return torch.mm(self.user_emb(users), self.frozen_items["item"][start:stop].T, out=out)
        u = self.user_emb(users) * self.head.weight[0]
        return torch.mm(u, self.item_emb.weight[start:stop].T, out=out)

    def train_scores(self, users, items):
        u, q = rows(self.user_emb, users), group_rows(self.item_emb, items)
        s = ((u * self.head.weight[0])[:, None, :] * q).sum(-1)
        return TrainScores(s, sq_norms(u), sq_norms(q))

    def item_embeddings(self):
        return self.item_emb.weight

    def item_side(self):
        return {"item": self.item_emb.weight * self.head.weight[0]}  # the head folded in

    def retrieval_users(self, users):
        return self.user_emb(users)

    def retrieval_items(self):
        return self.item_emb.weight * self.head.weight[0]  # the score exactly


class MLP(RecommenderNet):
    """An MLP over concat(p_u, q_i); `layers` are the hidden widths (the last feeds the head)."""

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int = 32,
        layers: Sequence[int] = (64, 32, 16),
        dropout: float = 0.0,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(n_users, n_items)
        self.embedding_dim = embedding_dim
        self.layers = list(layers)
        self.dropout = dropout
        self.init_std = init_std
        self.mlp = _MLPPart(n_users, n_items, embedding_dim, self.layers, dropout, init_std)
        self.head = nn.Linear(self.layers[-1], 1, bias=False)
        nn.init.xavier_uniform_(self.head.weight)

    def score(self, users, items):
        return self.head(self.mlp.pairs(users, items)).squeeze(-1)

    def score_items(self, users, start=0, stop=None, out=None):
        stop = self.n_items if stop is None else stop
        frozen = self.frozen_items or {}
        return self.mlp.grid(users, start, stop, self.head.weight[0], frozen.get("mlp_item"))

    def train_scores(self, users, items):
        tower, user_sq, item_sq = self.mlp.groups(users, items)
        return TrainScores(tower @ self.head.weight[0], user_sq, item_sq)

    def item_embeddings(self):
        return self.mlp.item_emb.weight

    def item_side(self):
        return {"mlp_item": self.mlp.item_part()}


class NeuMF(RecommenderNet):
    """GMF and MLP towers with separate embeddings, fused by one linear head, plus an item
    bias (`item_bias`, not in the paper: see docs/MODEL_DEFAULTS.md).

    The head is two vectors, `gmf_head` and `mlp_head`; with `learn_gmf_head=False` the GMF
    half is a buffer, so it stays fixed whatever device or dtype the net moves to.

    `pretrained_gmf` / `pretrained_mlp` name trained GMF / MLP checkpoints to start from, as in
    the NCF paper; the head then starts as alpha * h_gmf and (1 - alpha) * h_mlp.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        gmf_dim: int = 64,
        mlp_dim: int = 32,
        layers: Sequence[int] = (64, 32, 16),
        dropout: float = 0.0,
        init_std: float = 0.01,
        pretrained_gmf: str | None = None,
        pretrained_mlp: str | None = None,
        alpha: float = 0.5,
        item_bias: bool = True,
        learn_gmf_head: bool = True,
    ) -> None:
        super().__init__(n_users, n_items)
        self.item_bias = item_bias
        self.learn_gmf_head = learn_gmf_head
        self.gmf_dim = gmf_dim
        self.mlp_dim = mlp_dim
        self.layers = list(layers)
        self.dropout = dropout
        self.init_std = init_std
        self.pretrained_gmf = pretrained_gmf
        self.pretrained_mlp = pretrained_mlp
        self.alpha = alpha
        self.gmf_user = nn.Embedding(n_users, gmf_dim)
        self.gmf_item = nn.Embedding(n_items, gmf_dim)
        nn.init.normal_(self.gmf_user.weight, std=init_std)
        nn.init.normal_(self.gmf_item.weight, std=init_std)
        self.mlp = _MLPPart(n_users, n_items, mlp_dim, self.layers, dropout, init_std)
        # Starts as plain MF (GMF head ones, MLP head zeros): the MLP tower adds to a working
        # dot product only as far as it helps, instead of adding noise from step 0. A fixed
        # GMF half keeps the L2 on embeddings effective: a learned, unpenalised h could grow
        # while the embeddings shrink.
        self.mlp_head = nn.Parameter(torch.zeros(self.layers[-1]))
        if learn_gmf_head:
            self.gmf_head = nn.Parameter(torch.ones(gmf_dim))
        else:
            self.register_buffer("gmf_head", torch.ones(gmf_dim))
        self.register_load_state_dict_pre_hook(_split_fused_head)
        # Item popularity as its own term: BPR with uniform negatives learns it first, and
        # without a bias it must be squeezed into every embedding.
        self.bias = nn.Embedding(n_items, 1) if item_bias else None
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)
        if pretrained_gmf or pretrained_mlp:
            self._load_pretrained()

    def score(self, users, items):
        gmf = (self.gmf_user(users) * self.gmf_item(items)) @ self.gmf_head
        s = gmf + self.mlp.pairs(users, items) @ self.mlp_head
        return s if self.bias is None else s + self.bias(items).squeeze(-1)

    def train_scores(self, users, items):
        p, q = rows(self.gmf_user, users), group_rows(self.gmf_item, items)
        tower, user_sq, item_sq = self.mlp.groups(users, items)
        s = ((p * self.gmf_head)[:, None, :] * q).sum(-1) + tower @ self.mlp_head
        if self.bias is not None:
            s = s + group_rows(self.bias, items)[..., 0]
        return TrainScores(s, user_sq + sq_norms(p), item_sq + sq_norms(q))

    def score_items(self, users, start=0, stop=None, out=None):
        stop = self.n_items if stop is None else stop
        h_gmf, h_mlp = self.gmf_head, self.mlp_head
        frozen = self.frozen_items or {}
        if "gmf_item" in frozen:
            s = self.gmf_user(users) @ frozen["gmf_item"][start:stop].T
        else:
            s = (self.gmf_user(users) * h_gmf) @ self.gmf_item.weight[start:stop].T
        if self.bias is not None:
            s = s + self.bias.weight[start:stop, 0]
        return s + self.mlp.grid(users, start, stop, h_mlp, frozen.get("mlp_item"))

    def item_side(self):
        """GMF item vectors with the GMF head folded in, and the MLP's first-layer item half."""
        return {
            "gmf_item": self.gmf_item.weight * self.gmf_head,
            "mlp_item": self.mlp.item_part(),
        }

    def item_embeddings(self):
        """GMF item vectors: the tower whose geometry is a dot product, so cosine is meaningful."""
        return self.gmf_item.weight

    def retrieval_users(self, users):
        p = self.gmf_user(users)
        return torch.cat([p, p.new_ones(p.shape[0], 1)], 1) if self.bias is not None else p

    def retrieval_items(self):
        """The GMF tower with its head folded in, plus the item bias: the score minus the MLP
        tower, which re-ranking adds back."""
        q = self.gmf_item.weight * self.gmf_head
        return torch.cat([q, self.bias.weight], 1) if self.bias is not None else q

    def _load_pretrained(self) -> None:
        from recsys.models.checkpoint import load_net

        h_gmf, h_mlp = None, None
        with torch.no_grad():
            if self.pretrained_gmf:
                gmf = _expect(load_net(self.pretrained_gmf)[0], GMF, self)
                _expect_sizes(gmf, {"embedding_dim": self.gmf_dim})
                self.gmf_user.weight.copy_(gmf.user_emb.weight)
                self.gmf_item.weight.copy_(gmf.item_emb.weight)
                h_gmf = gmf.head.weight[0]
            if self.pretrained_mlp:
                mlp = _expect(load_net(self.pretrained_mlp)[0], MLP, self)
                _expect_sizes(mlp, {"embedding_dim": self.mlp_dim, "layers": self.layers})
                self.mlp.load_state_dict(mlp.mlp.state_dict())
                h_mlp = mlp.head.weight[0]
            if h_gmf is not None and h_mlp is not None:
                h_gmf, h_mlp = self.alpha * h_gmf, (1 - self.alpha) * h_mlp
            if h_gmf is not None:
                self.gmf_head.copy_(h_gmf)
            if h_mlp is not None:
                self.mlp_head.copy_(h_mlp)


def _split_fused_head(module: NeuMF, state_dict: dict[str, torch.Tensor], prefix: str, *_) -> None:
    """Checkpoints of recsys 0.1 hold the head as one `head.weight` [1, gmf_dim + last]."""
    fused = state_dict.pop(prefix + "head.weight", None)
    if fused is not None:
        state_dict[prefix + "gmf_head"] = fused[0, : module.gmf_dim]
        state_dict[prefix + "mlp_head"] = fused[0, module.gmf_dim :]


def _expect(net: Any, cls: type, target: NeuMF) -> Any:
    if not isinstance(net, cls):
        raise ValueError(f"expected a {cls.__name__} checkpoint, got {type(net).__name__}")
    if (net.n_users, net.n_items) != (target.n_users, target.n_items):
        raise ValueError(
            f"pretrained {cls.__name__} has {net.n_users} users x {net.n_items} items; "
            f"this data has {target.n_users} x {target.n_items}"
        )
    return net


def _expect_sizes(net: RecommenderNet, want: dict[str, Any]) -> None:
    got = {name: getattr(net, name) for name in want}
    if got != want:
        raise ValueError(f"pretrained {type(net).__name__} has {got}; this NeuMF needs {want}")
