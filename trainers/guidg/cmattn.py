"""GuiDG's cross-modal attention (CMAttn) over domain experts (appendix Eq. 19).

For a unit-norm image feature ``f`` (detached: no gradient reaches the image
encoder) and the frozen class text features ``T_i`` [C, D] of each of the
``d`` experts, each head ``h`` computes

- query ``q_h = W_h f + b_h`` (``Linear(D, D)``),
- one key per expert ``k_{h,i} = T_i^T a_h + c_h`` (``Linear(C, 1)``: a
  learned pooling over the expert's classes, shared by the experts),
- ``alpha_h = softmax_i cos(q_h, k_{h,i})`` (no temperature),

and the expert weights are the head average ``w = mean_h alpha_h`` [B, d].
"""
import torch
import torch.nn.functional as F
from torch import nn


class CMAttn(nn.Module):
    """Expert weights from image features and expert classifiers."""

    def __init__(self, feature_dim, num_classes, num_heads=4):
        super().__init__()
        if num_heads < 1:
            raise ValueError("CMAttn needs at least one head")
        self.queries = nn.ModuleList(nn.Linear(feature_dim, feature_dim)
                                     for _ in range(num_heads))
        self.poolings = nn.ModuleList(nn.Linear(num_classes, 1) for _ in range(num_heads))

    @property
    def num_heads(self):
        return len(self.queries)

    def forward(self, image_features, expert_features):
        """Weights [B, d] (rows sum to 1) for image features [B, D] and expert
        text features [d, C, D]."""
        query_in = image_features.detach().float()
        experts = expert_features.detach().float().transpose(1, 2)  # [d, D, C]
        weights = 0
        for query, pooling in zip(self.queries, self.poolings):
            q = F.normalize(query(query_in), dim=-1)                  # [B, D]
            k = F.normalize(pooling(experts).squeeze(-1), dim=-1)    # [d, D]
            weights = weights + F.softmax(q @ k.t(), dim=-1)
        return weights / self.num_heads


def batch_weights(weights, mode):
    """``"batch"``: the batch mean [d] (GuiDG's code); ``"sample"``: [B, d] as is."""
    return weights.mean(0) if mode == "batch" else weights


def mix_expert_logits(logits, weights):
    """Weighted sum over experts of logits [B, d, C] with weights [d] or [B, d]."""
    if weights.dim() == 1:
        weights = weights.unsqueeze(0).expand(logits.shape[0], -1)
    return torch.einsum("bd,bdc->bc", weights.to(logits.dtype), logits)
