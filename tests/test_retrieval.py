"""The retrieval reference row (recon.retrieval): nearest training silhouette at the same view,
scored with the training object's GT grid."""

from __future__ import annotations

import torch

from recon.retrieval import nearest_by_silhouette, retrieval_row, train_masks


def test_nearest_by_silhouette_matches_a_brute_force_search():
    gen = torch.Generator().manual_seed(0)
    bank = torch.rand(30, 3, 64, generator=gen) > 0.5
    queries = torch.rand(7, 3, 64, generator=gen) > 0.6
    queries[2] = bank[11]  # an exact copy is found
    got = nearest_by_silhouette(queries, bank)
    for q in range(7):
        for k in range(3):
            ious = [((queries[q, k] & bank[n, k]).sum() / (queries[q, k] | bank[n, k]).sum()).item() for n in range(30)]
            assert got[q, k].item() == max(range(30), key=lambda n: (ious[n], -n))
    assert got[2].tolist() == [11, 11, 11]


def test_retrieval_of_training_images_finds_their_own_shapes(tiny_dataset):
    masks, owners = train_masks(tiny_dataset, [0, 6])
    assert masks.shape[:2] == (len(owners), 2) and masks.dtype == torch.bool
    row = retrieval_row(tiny_dataset, split="train", views=[0, 6])
    # querying the training set with its own images: each image's nearest silhouette is its own
    # (IoU 1 in 2D), so every answer is the right category and (ties aside) the right shape
    assert set(row["per_category"]) and all(m["same_category"] == 1.0 for m in row["per_category"].values())
    assert row["mean_iou"] > 0.95


def test_retrieval_row_on_the_test_split_is_a_row(tiny_dataset):
    row = retrieval_row(tiny_dataset, split="test", views=[0, 12], max_per_category=1)
    assert row["mean_loss"] is None and 0.0 < row["mean_iou"] < 1.0
    assert all(m["n"] == 1 and 0.0 <= m["same_category"] <= 1.0 for m in row["per_category"].values())
