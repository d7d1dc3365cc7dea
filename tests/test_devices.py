"""One rule for where evaluation and serving compute (recsys.devices)."""

from __future__ import annotations

import pytest
import torch

from recsys.devices import resolve_device


def test_auto_and_empty_pick_the_gpu_only_when_torch_sees_one():
    expected = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("auto") == resolve_device(None) == resolve_device("") == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_a_name_that_is_no_device_is_refused():
    with pytest.raises(ValueError, match="not a device: use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_an_error_not_a_cpu_run():
    with pytest.raises(ValueError, match="sees no CUDA device"):
        resolve_device("cuda:0")
