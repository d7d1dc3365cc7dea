"""EASE (Steck, 2019): a closed-form item-item model, B = I - P / diag(P) with
P = (X^T X + lambda I)^-1, scoring a user by their train history: s_u = x_u B.

A strong baseline that neural models rarely beat on small and mid-sized catalogues
(Dacrema et al., 2019). Its cost is the catalogue squared, so it refuses catalogues whose
matrices would not fit in memory, before allocating them.
"""

from __future__ import annotations

import warnings

import torch

from recsys.models.base import RecommenderNet
from recsys.models.solvers import history_csr, history_positions, history_rows

# Float32 n_items x n_items matrices alive at once while solving (the weights are released
# first): the sparse product X^T X (up to one matrix's worth on dense data), the dense Gram
# matrix, its Cholesky factor and the inverse. A solved net needs one: its weights.
MATRICES_WHILE_SOLVING = 4


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on `device` (host: MemAvailable from /proc/meminfo)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown (not Linux): let the allocator decide


def check_memory(n_items: int, device: torch.device, matrices: int) -> None:
    """Refuse, before allocating, `matrices` float32 item x item matrices that do not fit."""
    need = matrices * 4 * n_items * n_items
    free = available_memory(device)
    if need > free:
        raise MemoryError(
            f"EASE needs about {need / 2**30:.1f} GiB for {n_items:,} items ({matrices} "
            f"float32 item x item matrices), more than the {free / 2**30:.1f} GiB available "
            f"on {device}: use model=ials (linear in the catalogue) or shrink the catalogue "
            "(a higher data.min_interactions)"
        )


class EASE(RecommenderNet):
    trainable = False  # solved in closed form (`solve`), not by gradient steps
    single_solve = True

    def __init__(
        self, n_users: int, n_items: int, l2_reg: float = 200.0, n_history: int = 0
    ) -> None:
        super().__init__(n_users, n_items)
        # A fresh net will be solved here; one with a history was solved already (loading).
        check_memory(n_items, torch.device("cpu"), MATRICES_WHILE_SOLVING if not n_history else 1)
        if l2_reg <= 0:
            raise ValueError(f"EASE's l2_reg must be > 0, got {l2_reg}")
        self.l2_reg = float(l2_reg)
        self.n_history = int(n_history)
        self.register_buffer("weights", torch.zeros(n_items, n_items))
        # The train interactions as CSR: a user's scores are their history row times B.
        self.register_buffer("indptr", torch.zeros(n_users + 1, dtype=torch.long))
        self.register_buffer("indices", torch.zeros(self.n_history, dtype=torch.long))

    @torch.no_grad()
    def solve(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """Fit B on the train interactions (duplicates count once) and keep the histories."""
        device, dtype = self.weights.device, self.weights.dtype
        self.weights = self.weights.new_empty(0)  # released while the solve needs the room
        check_memory(self.n_items, users.device, MATRICES_WHILE_SOLVING)
        indptr, indices = history_csr(users, items, self.n_users)
        gram = self._gram(indptr, indices, dtype)
        gram.diagonal().add_(self.l2_reg)
        # P = G^-1 through Cholesky (G + lambda I is symmetric positive definite).
        factor = torch.linalg.cholesky(gram)
        del gram
        p = torch.cholesky_inverse(factor)
        del factor
        weights = p.div_(-p.diagonal().clone())  # B_ij = -P_ij / P_jj
        weights.diagonal().zero_()
        self.weights = weights.to(device)
        self.indptr = indptr.to(self.weights.device)
        self.indices = indices.to(self.weights.device)
        self.n_history = int(indices.numel())

    def _gram(self, indptr: torch.Tensor, indices: torch.Tensor, dtype) -> torch.Tensor:
        """X^T X from the sparse X (cost: the co-occurring pairs, not users x items^2)."""
        if indices.numel() == 0:
            return torch.zeros(self.n_items, self.n_items, dtype=dtype, device=indices.device)
        # On the host: CPU kernels cover the sparse CSR product on every torch build (the
        # Cholesky solve then runs where the net lives).
        device = indices.device
        indptr, indices = indptr.cpu(), indices.cpu()
        values = torch.ones(indices.numel(), dtype=dtype)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": matmul is covered
            warnings.simplefilter("ignore", UserWarning)
            x = torch.sparse_csr_tensor(
                indptr, indices, values, size=(self.n_users, self.n_items), check_invariants=True
            )
            return (x.t() @ x).to_dense().to(device)

    def _history(self, users: torch.Tensor) -> torch.Tensor:
        return history_rows(self.indptr, self.indices, users.long(), self.n_items).to(
            self.weights.dtype
        )

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        # s(u, i) = sum of B[j, i] over u's history j: the cost follows the histories, not
        # pairs x catalogue (the sampled protocol scores 100k pairs at once).
        row, pos = history_positions(self.indptr, users.long())
        parts = self.weights[self.indices[pos], items.long()[row]]
        return torch.zeros(users.numel(), dtype=self.weights.dtype, device=parts.device).index_add_(
            0, row, parts
        )

    def score_items(
        self,
        users: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        stop = self.n_items if stop is None else stop
        return self._history(users) @ self.weights[:, start:stop]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The history's length is the data's: take it from the checkpoint (a net built from
        # the config, e.g. to test a checkpoint or resume, starts with none).
        indices = state_dict.get(prefix + "indices")
        if indices is not None and indices.shape != self.indices.shape:
            self.indices = self.indices.new_empty(indices.shape)
            self.n_history = int(indices.numel())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def item_embeddings(self) -> torch.Tensor:
        # Row i: how much item i raises the score of every item; similar items act alike.
        return self.weights
