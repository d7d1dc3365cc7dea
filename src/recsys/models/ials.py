"""iALS (Hu, Koren & Volinsky, 2008): matrix factorisation of implicit feedback by
alternating least squares, every (user, item) weighted, observed pairs with confidence
1 + alpha and target 1, the rest with confidence 1 and target 0.

Each `solve` call is one sweep (users, then items), each side solved by a few steps of
conjugate gradient warm-started from the last sweep, as implicit does: a step costs
O(interactions x dim + rows x dim^2), never the explicit per-user d x d systems. The
factors are an MF's, so scoring, serving and similar items are MF's.
"""

from __future__ import annotations

import torch

from recsys.models.mf import MF
from recsys.models.solvers import history_csr


class IALS(MF):
    trainable = False  # fitted by solver sweeps (`solve`, one per epoch), not by gradients
    single_solve = False

    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int = 64,
        alpha: float = 2.0,
        l2_reg: float = 50.0,
        cg_steps: int = 3,
        init_std: float = 0.1,
    ) -> None:
        super().__init__(n_users, n_items, embedding_dim, item_bias=False, init_std=init_std)
        if alpha < 0 or l2_reg <= 0 or cg_steps < 1:
            raise ValueError(
                f"iALS needs alpha >= 0, l2_reg > 0 and cg_steps >= 1, got {alpha}, {l2_reg}, "
                f"{cg_steps}"
            )
        self.alpha, self.l2_reg, self.cg_steps = float(alpha), float(l2_reg), int(cg_steps)
        self.requires_grad_(False)

    @torch.no_grad()
    def solve(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """One alternating sweep over the distinct train pairs."""
        indptr, cols = history_csr(users, items, self.n_users)
        rows = torch.repeat_interleave(
            torch.arange(self.n_users, device=cols.device), indptr[1:] - indptr[:-1]
        )
        x, y = self.user_emb.weight, self.item_emb.weight
        x.copy_(self._conjugate_gradient(x, y, rows, cols))
        y.copy_(self._conjugate_gradient(y, x, cols, rows))

    def _conjugate_gradient(
        self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        """Solve (Y^T C_r Y + lambda I) x_r = Y^T C_r p_r for every row r of `x` at once, where
        C_r weighs the observed pairs (rows[n], cols[n]) by 1 + alpha and all others by 1."""
        yty = y.T @ y
        observed = y[cols]  # [nnz, d]

        def apply(v: torch.Tensor) -> torch.Tensor:  # A v, row by row
            out = v @ yty + self.l2_reg * v
            dots = (v[rows] * observed).sum(1, keepdim=True)
            return out.index_add_(0, rows, observed * dots, alpha=self.alpha)

        b = torch.zeros_like(x).index_add_(0, rows, observed).mul_(1.0 + self.alpha)
        x = x.clone()
        r = b - apply(x)
        p = r.clone()
        rs = (r * r).sum(1, keepdim=True)
        for _ in range(self.cg_steps):
            ap = apply(p)
            step = rs / (p * ap).sum(1, keepdim=True).clamp_min(1e-30)
            x += step * p
            r -= step * ap
            rs_next = (r * r).sum(1, keepdim=True)
            p = r + (rs_next / rs.clamp_min(1e-30)) * p
            rs = rs_next
        return x
