"""The location contrast (PatchNCE, as in CUT) that NLCL and CCLGAN share, with its
negatives chosen one of three ways (`NEGATIVE_SELECTIONS`):

- `cut`: CUT's own: an anchor (a query vector at one location of the output) has one
  positive, the key at its location in the input, and as negatives the keys at the
  other locations of the same image.
- `domain`: domain-wise negatives (Kahana & Hoshen): the negatives are drawn only from
  the anchor's own domain, the other locations of the same output (queries), never
  from the input's; the positive stays the key. Telling the positive from the
  negatives by domain cues alone is then impossible, so the features are pushed to be
  invariant to the domain (rain or no rain) and to keep the content.
- `hcsc`: HCSC-style selection (Guo et al., CVPR 2022), one level: prototypes are
  k-means centres over a memory of recent key vectors (`PrototypeMemory`); each key
  belongs to its nearest prototype. An anchor's negatives are only the keys of other
  prototypes (truly different content; keys of its own prototype are left out rather
  than pushed away), and its positives are widened to its key and its key's prototype.

`selection_masks` is the sampler: which candidates are an anchor's positives and
negatives; `selective_nce` is the loss over them.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rainbench.train.core.config import NEGATIVE_SELECTIONS


def at_least_float32(x: Tensor) -> Tensor:
    """x in float32, or in its own dtype when that is wider (float64 in the tests)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def patch_nce(query: Tensor, key: Tensor, temperature: float = 0.07) -> Tensor:
    """InfoNCE as in CUT (Park et al., 2020) over N×P×D queries and keys.

    Each query's positive is the key at its own location; its negatives are the keys at
    the other P−1 locations of the same image (no negatives across images); unit
    vectors. The key is detached here: it is the target the query is pulled to, and
    gets no gradient. Mean over locations and batch.
    """
    n, p, _ = query.shape
    query, key = at_least_float32(query), at_least_float32(key.detach())
    logits = query @ key.transpose(1, 2) / temperature  # N×P×P; the positive on the diagonal
    target = torch.arange(p, device=query.device).repeat(n)
    return F.cross_entropy(logits.flatten(0, 1), target)


def selection_masks(
    mode: str, n: int, p: int, prototypes: int = 0, assignment: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """(positives, negatives): N×P×C boolean masks over each anchor's candidates, which
    are, in this order, the P keys of its image, the P queries of its image and the
    `prototypes` prototypes (C = 2P + prototypes). Anchor i is query i. `assignment`
    (N×P, `hcsc` only) is each key's prototype."""
    if mode not in NEGATIVE_SELECTIONS:
        raise ValueError(f"negative selection must be one of {NEGATIVE_SELECTIONS}, not {mode!r}")
    device = assignment.device if assignment is not None else torch.device("cpu")
    eye = torch.eye(p, dtype=torch.bool, device=device).expand(n, p, p)
    nothing = torch.zeros(n, p, p, dtype=torch.bool, device=device)
    no_prototype = torch.zeros(n, p, prototypes, dtype=torch.bool, device=device)
    if mode == "cut":
        return (torch.cat([eye, nothing, no_prototype], 2),
                torch.cat([~eye, nothing, no_prototype], 2))  # fmt: skip
    if mode == "domain":
        return (torch.cat([eye, nothing, no_prototype], 2),
                torch.cat([nothing, ~eye, no_prototype], 2))  # fmt: skip
    if assignment is None:
        raise ValueError("hcsc selection needs each key's prototype")
    own = torch.nn.functional.one_hot(assignment, prototypes).bool()  # N×P×M
    other_prototype = assignment[:, :, None] != assignment[:, None, :]  # anchor i, key j
    return (torch.cat([eye, nothing, own], 2),
            torch.cat([other_prototype & ~eye, nothing, torch.zeros_like(own)], 2))  # fmt: skip


def selective_nce(
    query: Tensor,
    key: Tensor,
    positives: Tensor,
    negatives: Tensor,
    temperature: float = 0.07,
    prototypes: Tensor | None = None,
) -> Tensor:
    """Multi-positive InfoNCE over the candidates of `selection_masks`: per anchor,
    −log Σ_pos exp(q·c/τ) / Σ_{pos ∪ neg} exp(q·c/τ), mean over anchors and batch. Every
    candidate is detached: only the anchor moves."""
    n, _p, d = query.shape
    query = at_least_float32(query)
    candidates = [key.detach(), query.detach()]
    if prototypes is not None:
        candidates.append(prototypes.detach().expand(n, -1, d))
    candidates = at_least_float32(torch.cat(candidates, 1))
    logits = query @ candidates.transpose(1, 2) / temperature  # N×P×C
    kept = logits.masked_fill(~(positives | negatives), float("-inf")).logsumexp(2)
    pulled = logits.masked_fill(~positives, float("-inf")).logsumexp(2)
    return (kept - pulled).mean()


class PrototypeMemory(nn.Module):
    """The last `size` key vectors of one contrast layer, and k-means prototypes over
    them. Buffers, so that a checkpoint holds them and a resumed run clusters the same."""

    def __init__(self, size: int, dim: int = 256):
        super().__init__()
        self.register_buffer("vectors", torch.zeros(size, dim))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))

    def add(self, vectors: Tensor) -> None:
        """Keep `vectors` (…×D), the oldest dropped when full."""
        flat = vectors.detach().reshape(-1, vectors.shape[-1]).float()[-len(self.vectors) :]
        slots = (self.position + torch.arange(len(flat), device=flat.device)) % len(self.vectors)
        self.vectors[slots] = flat
        self.position.copy_((self.position + len(flat)) % len(self.vectors))
        self.filled.copy_(torch.clamp(self.filled + len(flat), max=len(self.vectors)))

    def prototypes(self, count: int, sampler: torch.Generator, iterations: int = 5) -> Tensor:
        """`count`×D unit prototypes: k-means (cosine) over the memory, started from
        vectors drawn with `sampler`."""
        held = F.normalize(self.vectors[: int(self.filled)], dim=1)
        if len(held) < count:
            raise ValueError(f"{count} prototypes need {count} remembered vectors, not {len(held)}")
        start = torch.randperm(len(held), generator=sampler, device=sampler.device)[:count]
        centres = held[start.to(held.device)]
        for _ in range(iterations):
            nearest = (held @ centres.T).argmax(1)
            sums = torch.zeros_like(centres).index_add_(0, nearest, held)
            centres = torch.where(sums.norm(dim=1, keepdim=True) > 0, F.normalize(sums, dim=1),
                                  centres)  # fmt: skip
        return centres


def location_contrast(
    query: Tensor,
    key: Tensor,
    mode: str = "cut",
    temperature: float = 0.07,
    memory: PrototypeMemory | None = None,
    prototypes: int = 8,
    sampler: torch.Generator | None = None,
) -> Tensor:
    """PatchNCE of N×P×D queries against keys with the negatives of `mode`; `hcsc`
    remembers the keys in `memory` and clusters it with `sampler`."""
    if mode == "cut":
        return patch_nce(query, key, temperature)
    n, p, _ = query.shape
    if mode == "domain":
        return selective_nce(query, key, *selection_masks(mode, n, p), temperature)
    memory.add(key)
    # Fewer prototypes while the memory holds fewer keys (a first step on a tiny map).
    centres = memory.prototypes(min(prototypes, int(memory.filled)), sampler)
    assignment = (F.normalize(key.detach().float(), dim=-1) @ centres.T).argmax(-1)
    positives, negatives = selection_masks(mode, n, p, len(centres), assignment)
    return selective_nce(query, key, positives, negatives, temperature, centres)
