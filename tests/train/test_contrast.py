"""The location contrast's negative selection: each sampler picks exactly the positives
and negatives it documents, the loss over them is CUT's PatchNCE for CUT's choice, the
prototype memory keeps the latest keys and finds separated clusters, and NLCL trains
with every selection."""

import pytest
import torch
import torch.nn.functional as F

from rainbench.train.core.contrast import (
    PrototypeMemory,
    location_contrast,
    patch_nce,
    selection_masks,
    selective_nce,
)
from rainbench.train.nlcl.config import NLCLConfig
from rainbench.train.nlcl.trainer import train

N, P, M = 2, 6, 3


def _blocks(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A mask's parts over the keys, the queries and the prototypes."""
    return mask[..., :P], mask[..., P : 2 * P], mask[..., 2 * P :]


def test_cut_negatives_are_the_other_keys_of_the_same_image():
    positives, negatives = selection_masks("cut", N, P)
    eye = torch.eye(P, dtype=torch.bool).expand(N, P, P)
    keys, queries, _ = _blocks(positives)
    assert torch.equal(keys, eye) and not queries.any()
    keys, queries, _ = _blocks(negatives)
    assert torch.equal(keys, ~eye) and not queries.any()


def test_domain_negatives_come_only_from_the_anchors_own_domain():
    # The anchor is a query (the output's domain); the keys are the input's domain.
    positives, negatives = selection_masks("domain", N, P)
    eye = torch.eye(P, dtype=torch.bool).expand(N, P, P)
    keys, queries, _ = _blocks(negatives)
    assert not keys.any(), "no negative from the other domain"
    assert torch.equal(queries, ~eye), "every other location of the anchor's own output"
    keys, queries, _ = _blocks(positives)
    assert torch.equal(keys, eye) and not queries.any()


def test_hcsc_negatives_are_only_keys_of_other_prototypes_and_positives_widen():
    assignment = torch.tensor([[0, 0, 1, 2, 1, 0], [2, 2, 2, 1, 0, 1]])
    positives, negatives = selection_masks("hcsc", N, P, M, assignment)
    for n in range(N):
        for i in range(P):
            keys, queries, prototypes = (b[n, i] for b in _blocks(negatives))
            assert not queries.any() and not prototypes.any()
            chosen = keys.nonzero().flatten().tolist()
            assert chosen == [j for j in range(P) if assignment[n, j] != assignment[n, i]]
            keys, queries, prototypes = (b[n, i] for b in _blocks(positives))
            assert keys.nonzero().flatten().tolist() == [i] and not queries.any()
            assert prototypes.nonzero().flatten().tolist() == [int(assignment[n, i])]


def test_the_selective_loss_with_cuts_choice_is_patch_nce():
    query = F.normalize(torch.randn(N, P, 8, dtype=torch.float64), dim=-1)
    key = F.normalize(torch.randn(N, P, 8, dtype=torch.float64), dim=-1)
    positives, negatives = selection_masks("cut", N, P)
    ours = selective_nce(query, key, positives, negatives, 0.1)
    assert float(ours) == pytest.approx(float(patch_nce(query, key, 0.1)), rel=1e-12)


def test_the_selective_loss_moves_only_the_anchor():
    query = torch.randn(N, P, 8, requires_grad=True)
    key = torch.randn(N, P, 8, requires_grad=True)
    selective_nce(query, key, *selection_masks("domain", N, P)).backward()
    assert query.grad is not None and key.grad is None


def test_the_memory_keeps_the_latest_keys_and_finds_separated_clusters():
    memory = PrototypeMemory(size=8, dim=2)
    memory.add(torch.arange(20.0).view(10, 2))
    assert int(memory.filled) == 8
    assert sorted(memory.vectors[:, 0].tolist()) == [4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    memory = PrototypeMemory(size=64, dim=2)
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    noise = torch.randn(60, 2, generator=torch.Generator().manual_seed(0)) * 0.05
    memory.add(centres.repeat(20, 1) + noise)
    sampler = torch.Generator().manual_seed(3)
    found = memory.prototypes(3, sampler)
    assert torch.allclose(found.sort(0).values, centres.sort(0).values, atol=0.05)
    again = PrototypeMemory(size=64, dim=2)
    again.load_state_dict(memory.state_dict())
    assert torch.equal(again.prototypes(3, torch.Generator().manual_seed(3)), found)


def test_hcsc_location_contrast_remembers_its_keys():
    memory = PrototypeMemory(size=32, dim=8)
    query = F.normalize(torch.randn(1, 12, 8), dim=-1)
    key = F.normalize(torch.randn(1, 12, 8), dim=-1)
    loss = location_contrast(query, key, "hcsc", 0.07, memory, 3, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and int(memory.filled) == 12


@pytest.mark.parametrize("negatives", ["domain", "hcsc"])
def test_nlcl_trains_with_each_negative_selection(tmp_path, _dataset, negatives):
    config = NLCLConfig(
        steps=2, crop=48, channels=8, blocks=2, window=16, patch=8, positives=4,
        negatives=16, nce_layers=(0, 1, 2, 3), nce_locations=32, workers=0, log_every=1,
        nce_negatives=negatives, prototypes=4, prototype_memory=128,
    )  # fmt: skip
    train(_dataset, tmp_path / "run", config, threads=1)
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ("memories" in state) == (negatives == "hcsc")
    with pytest.raises(ValueError, match="nce_negatives"):
        NLCLConfig(nce_negatives="nearest")
