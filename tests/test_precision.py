"""The precision the monitor and ``explain`` attribute in (``dave_lightning.precision``)."""

from __future__ import annotations

import pytest
import torch

from dave_lightning.precision import AUTOCAST_CHOICES, autocast_dtype, bf16_by_default


@pytest.mark.parametrize(
    ("capability", "expected"), [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)]
)
def test_bf16_by_default_on_cuda_from_compute_capability_8(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: bool
) -> None:
    asked = []

    def capability_of(device: torch.device) -> tuple[int, int]:
        asked.append(device)
        return capability

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability_of)
    assert bf16_by_default("cuda:1") is expected
    assert asked == [torch.device("cuda:1")]  # the device asked about, not the current one


@pytest.mark.parametrize("device", ["cpu", "meta", torch.device("cpu")])
def test_never_bf16_by_default_off_cuda(device: torch.device | str) -> None:
    assert bf16_by_default(device) is False


def test_each_choice_names_its_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AUTOCAST_CHOICES == (None, "auto", "bf16", "fp16")
    for device in ("cpu", "cuda"):
        assert autocast_dtype(None, device) is None
        assert autocast_dtype("bf16", device) is torch.bfloat16
        assert autocast_dtype("fp16", device) is torch.float16
    assert autocast_dtype("auto", "cpu") is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (9, 0))
    assert autocast_dtype("auto", "cuda") is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: (7, 0))
    assert autocast_dtype("auto", "cuda") is None


@pytest.mark.cuda
def test_auto_on_this_gpu_follows_its_capability() -> None:
    device = torch.device("cuda")
    native = torch.cuda.get_device_capability(device)[0] >= 8
    assert autocast_dtype("auto", device) is (torch.bfloat16 if native else None)
