"""Tie-breaking, the random order, model modes, grad mode, RNG, and input checks."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from torch import nn

from dave_lightning.errors import BadInputError
from dave_lightning.metrics.functional import pixel_deletion

HEIGHT, WIDTH = 2, 3
PIXELS = HEIGHT * WIDTH


def order_revealing_model() -> nn.Module:
    """Logit 0 = sum of 2**p over the pixels p still present (images of ones, zero fill)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, 2, dtype=torch.float64))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([2.0 ** torch.arange(PIXELS), torch.zeros(PIXELS)]))
        model[1].bias.zero_()
    return model


def removal_orders(
    maps: torch.Tensor, order: str, seed: int, image_ids: list[int] | None = None
) -> list[tuple[int, ...]]:
    """Run pixel deletion one pixel per step and decode which pixel each step removed."""
    images = torch.ones(maps.shape[0], 1, HEIGHT, WIDTH, dtype=torch.float64)
    _, curves = pixel_deletion(
        order_revealing_model(),
        images,
        maps,
        0,
        steps=PIXELS,
        order=order,
        replacement="zero",
        score="logit",
        seed=seed,
        image_ids=image_ids,
    )
    drops = (curves[:, :-1] - curves[:, 1:]).tolist()
    return [tuple(round(math.log2(drop)) for drop in row) for row in drops]


def test_decoding_works_on_a_map_without_ties():
    maps = torch.tensor([[[0.5, 3.0, -1.0], [2.0, 0.0, 1.0]]], dtype=torch.float64)
    assert removal_orders(maps, "most_relevant_first", 0) == [(1, 3, 5, 0, 4, 2)]
    assert removal_orders(maps, "least_relevant_first", 0) == [(2, 4, 0, 5, 3, 1)]


def test_ties_are_broken_at_random_but_reproducibly():
    maps = torch.zeros(1, HEIGHT, WIDTH, dtype=torch.float64)  # all tied
    orders = [removal_orders(maps, "most_relevant_first", seed)[0] for seed in range(240)]
    assert all(sorted(order) == list(range(PIXELS)) for order in orders)
    assert orders[:5] == [removal_orders(maps, "most_relevant_first", s)[0] for s in range(5)]
    assert len(set(orders)) > 150  # of 720 possible orders
    assert orders.count(tuple(range(PIXELS))) <= 2  # index order is not special
    first = Counter(order[0] for order in orders)
    assert set(first) == set(range(PIXELS))
    assert all(20 <= first[p] <= 60 for p in range(PIXELS)), first  # about 40 each


def test_ties_only_reorder_within_a_tie():
    maps = torch.tensor([[[3.0, 1.0, 1.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    most, least = set(), set()
    for seed in range(100):  # 12 arrangements: 100 draws miss one with probability ~0.2 %
        order = removal_orders(maps, "most_relevant_first", seed)[0]
        assert order[0] == 0
        assert set(order[1:4]) == {1, 2, 3}
        assert set(order[4:]) == {4, 5}
        most.add(order)
        order = removal_orders(maps, "least_relevant_first", seed)[0]
        assert set(order[:2]) == {4, 5}
        assert set(order[2:5]) == {1, 2, 3}
        assert order[5] == 0
        least.add(order)
    assert len(most) == len(least) == 12  # every within-tie arrangement shows up


def test_random_order_ignores_the_map_and_differs_between_images():
    maps = torch.randn(2, HEIGHT, WIDTH, dtype=torch.float64)
    first = removal_orders(maps, "random", seed=3)
    assert first == removal_orders(-maps, "random", seed=3)
    assert first[0] != first[1]
    assert first != removal_orders(maps, "random", seed=4)
    assert all(sorted(order) == list(range(PIXELS)) for order in first)


class Recorder(nn.Module):
    """Records the module mode and grad mode it runs in; optionally raises."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(PIXELS, 3)
        self.dropout = nn.Dropout(0.5)
        self.fail = fail
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append((self.training, self.dropout.training, torch.is_grad_enabled()))
        if self.fail:
            raise RuntimeError("model failed")
        return self.linear(self.dropout(images.flatten(1)))


def modes(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


@pytest.mark.parametrize("fail", [False, True])
def test_model_runs_in_eval_without_grad_and_its_modes_come_back(fail):
    model = Recorder(fail)
    model.train()
    model.linear.eval()  # mixed modes must come back exactly
    before = modes(model)
    images, maps = torch.rand(2, 1, HEIGHT, WIDTH), torch.rand(2, HEIGHT, WIDTH)
    if fail:
        with pytest.raises(RuntimeError, match="model failed"):
            pixel_deletion(model, images, maps, 0, steps=3)
    else:
        pixel_deletion(model, images, maps, 0, steps=3)
    assert modes(model) == before
    assert model.seen
    assert all(seen == (False, False, False) for seen in model.seen)
    assert torch.is_grad_enabled()


def test_modes_come_back_after_a_bad_target():
    model = Recorder()
    model.train()
    with pytest.raises(BadInputError, match="class indices < 3"):
        pixel_deletion(model, torch.rand(1, 1, HEIGHT, WIDTH), torch.rand(1, HEIGHT, WIDTH), 3)
    assert all(modes(model))


def test_global_rng_is_untouched_and_irrelevant():
    model = Recorder()
    images, maps = torch.rand(2, 1, HEIGHT, WIDTH), torch.zeros(2, HEIGHT, WIDTH)  # ties
    results = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        for order in ("most_relevant_first", "random"):
            results.append(pixel_deletion(model, images, maps, 0, steps=3, order=order)[1])
        assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(results[0], results[2])
    torch.testing.assert_close(results[1], results[3])


GOOD = dict(
    images=torch.rand(2, 1, HEIGHT, WIDTH), attributions=torch.rand(2, HEIGHT, WIDTH), target=0
)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"images": torch.rand(1, HEIGHT, WIDTH)}, r"`images`: expected a floating-point tensor"),
        ({"images": torch.ones(2, 1, HEIGHT, WIDTH, dtype=torch.uint8)}, r"torch.uint8 tensor"),
        ({"attributions": torch.rand(2, WIDTH, HEIGHT)}, r"shape \(2, 2, 3\) to match `images`"),
        ({"attributions": torch.rand(3, HEIGHT, WIDTH)}, r"received a torch.float32 .*\(3, 2, 3\)"),
        ({"attributions": torch.ones(2, HEIGHT, WIDTH, dtype=torch.long)}, r"`attributions`"),
        ({"target": torch.tensor([0.0, 1.0])}, r"`target`: expected an int or an integer tensor"),
        ({"target": torch.tensor([0, 1, 1])}, r"`target`: .* shape \(2,\), received .*\(3,\)"),
        ({"target": True}, r"`target`: expected an int"),
        ({"target": -1}, r"`target`: expected class indices >= 0, received -1"),
        ({"target": torch.tensor([0, 5])}, r"`target`: expected class indices < 3 .* received 5"),
        ({"steps": 0}, r"`steps`: expected an integer >= 1, received int 0"),
        ({"max_fraction": 0.0}, r"`max_fraction`: expected a number in \(0, 1\]"),
        ({"max_fraction": 1.5}, r"`max_fraction`"),
        ({"order": "most"}, r"`order`: expected one of 'most_relevant_first', "),
        ({"replacement": "gray"}, r"`replacement`: expected one of 'blur', 'zero', 'mean'"),
        ({"replacement": torch.zeros(3, 1, 1)}, r"broadcastable to \(2, 1, 2, 3\)"),
        ({"replacement": torch.zeros(4)}, r"broadcastable to .* shape \(4,\)"),
        ({"replacement": torch.zeros(1, 1, 1, 1, 1)}, r"broadcastable to"),
        ({"replacement": torch.zeros(1, dtype=torch.long)}, r"`replacement`: expected a floating"),
        ({"score": "probability"}, r"`score`: expected one of 'softmax', 'logit'"),
        ({"batch_size": 0}, r"`batch_size`: expected an integer >= 1"),
        ({"seed": -1}, r"`seed`: expected an integer >= 0"),
        ({"blur_kernel_size": 4}, r"`blur_kernel_size`: expected an odd integer"),
        ({"blur_sigma": 0.0}, r"`blur_sigma`: expected a positive number"),
        ({"image_ids": [1, 2, 3]}, r"`image_ids`: expected 2 integers, one per image"),
        ({"image_ids": [0.5, 1.5]}, r"`image_ids`: expected 2 integers"),
        # checked even when no map is finite and no pass is run
        (
            {"attributions": torch.full((2, HEIGHT, WIDTH), float("nan")), "image_ids": [1]},
            r"`image_ids`: expected 2 integers",
        ),
    ],
)
def test_bad_inputs(change, match):
    arguments = {**GOOD, **change}
    with pytest.raises(BadInputError, match=match):
        pixel_deletion(Recorder(), **arguments)


@pytest.mark.parametrize(
    "model",
    [nn.Flatten(0), nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, 3), nn.Flatten(0))],
)
def test_model_output_must_be_logits(model):
    with pytest.raises(BadInputError, match=r"`model`: expected a model returning logits"):
        pixel_deletion(model, **GOOD)


def test_no_graph_is_built_for_images_that_require_grad():
    images = torch.rand(2, 1, HEIGHT, WIDTH, requires_grad=True)
    saved: list[torch.Size] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.shape)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        _, curves = pixel_deletion(Recorder(), images, GOOD["attributions"], 0, steps=2)
    assert not curves.requires_grad
    assert saved == []  # nothing kept for a backward pass, not even by the blur


def test_image_ids_key_the_tie_breaking_not_the_batch_position():
    """Curves must not depend on how images are split into batches or processes."""
    maps = torch.zeros(3, HEIGHT, WIDTH, dtype=torch.float64)  # all ties: order = permutation
    whole = removal_orders(maps, "most_relevant_first", 4, image_ids=[10, 11, 12])
    tail = removal_orders(maps[1:], "most_relevant_first", 4, image_ids=[11, 12])
    assert whole[1:] == tail
    assert removal_orders(maps[1:], "most_relevant_first", 4)[0] != whole[1]
