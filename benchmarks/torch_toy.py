"""The toy model's training step as a plain batched PyTorch loop: the baseline that
`bench_train.py --against torch` times. Not part of the package (torch is an optional
`bench` extra); the same math as toymodels (models/toy.py, tasks/toy.py):

  I instances (one leading axis of every tensor)   B batch   m keys   N features   D, H
  f [I, B, m+1, N]   sparse tokens: feature active with prob p, magnitude U[0, 1]
  r = f Wᵀ; recon = ReLU(r W + b); L_recon = mean over tokens of Σ_i I_i (f − recon)²
  ℓ = (W_Q r_q)·(W_K r_j); targets s·f_qᵀ T f_j; L_attn = KL(softmax targets ‖ softmax ℓ)
  loss = L_recon + λ L_attn per instance, summed over instances (their gradients are
  independent), AdamW with the config's rate and decoupled weight decay.
Products take the contraction order toymodels takes for the shapes (models/toy.py: through
WᵀW and Wᵀ Ω W [N, N] when that is fewer multiply-adds; tasks/toy.step_orders), so the two
loops do equal work.
"""

import math

import numpy as np
import torch

from toymodels.tasks.toy import step_orders


class TorchToy:
    def __init__(self, cfg, n_instances: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        I, N, D, H = n_instances, cfg.N, cfg.D, cfg.H
        self.cfg, self.I = cfg, I
        head_std = cfg.init_scale / math.sqrt(D)
        self.W = (torch.randn(I, D, N, generator=g) * math.sqrt(2 / (D + N))).requires_grad_()
        self.b = torch.zeros(I, 1, 1, N, requires_grad=True)
        self.W_Q = (torch.randn(I, H, D, generator=g) * head_std).requires_grad_()
        self.W_K = (torch.randn(I, H, D, generator=g) * head_std).requires_grad_()
        T = np.zeros((N, N), np.float32)
        for i, j, v in cfg.template:
            T[i, j] = v
        self.T = torch.from_numpy(T)
        self.importance = torch.tensor(cfg.importance_decay ** np.arange(N), dtype=torch.float32)
        self.p = torch.tensor(cfg.p_active_vector, dtype=torch.float32)
        self.opt = torch.optim.AdamW([self.W, self.b, self.W_Q, self.W_K], lr=cfg.learning_rate,
                                     weight_decay=cfg.weight_decay)
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.gram, self.features = step_orders(cfg)

    def step(self):
        cfg, I = self.cfg, self.I
        shape = (I, cfg.batch_size, cfg.m + 1, cfg.N)
        on = torch.rand(shape, generator=self.gen) < self.p
        f = torch.where(on, torch.rand(shape, generator=self.gen), 0.0)  # [I, B, m+1, N]
        loss, l_recon = self.loss(f)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return l_recon.detach()

    def loss(self, f):
        """(summed loss, L_recon [I]) on tokens f [I, B, m+1, N]."""
        cfg = self.cfg
        if not (self.gram and self.features):  # residuals r = W f, shared by both products
            r = torch.einsum("ibtn,idn->ibtd", f, self.W)
        if self.gram:
            gram = torch.einsum("idn,idk->ink", self.W, self.W)  # WᵀW [I, N, N]
            pre = torch.einsum("ibtn,ink->ibtk", f, gram)
        else:
            pre = torch.einsum("ibtd,idn->ibtn", r, self.W)
        recon = torch.relu(pre + self.b)
        l_recon = (((f - recon) ** 2) @ self.importance).mean(dim=(1, 2))  # [I]
        if self.features:
            qk = torch.einsum("ihn,ihk->ink", self.W_Q @ self.W, self.W_K @ self.W)  # Wᵀ Ω W
            logits = torch.einsum("ibk,ibjk->ibj", torch.einsum("ibn,ink->ibk", f[:, :, 0], qk),
                                  f[:, :, 1:])
        else:
            q = torch.einsum("ibd,ihd->ibh", r[:, :, 0], self.W_Q)
            k = torch.einsum("ibjd,ihd->ibjh", r[:, :, 1:], self.W_K)
            logits = torch.einsum("ibh,ibjh->ibj", q, k)
        targets = cfg.target_scale * torch.einsum("ibn,nk,ibjk->ibj", f[:, :, 0], self.T,
                                                  f[:, :, 1:])
        p_t = torch.softmax(targets, -1)
        kl = (p_t * (torch.log_softmax(targets, -1) - torch.log_softmax(logits, -1))).sum(-1)
        return (l_recon + cfg.lam * kl.mean(dim=1)).sum(), l_recon

    def train(self, steps: int):
        """steps steps; the per-step reconstruction curve [I, steps] like toymodels'."""
        return torch.stack([self.step() for _ in range(steps)], 1).numpy()
