"""Validation of image batches (lossnet.inputs)."""
import pytest
import torch

from lossnet.errors import InputError
from lossnet.inputs import check_images, check_pair


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_floating_dtype_is_accepted_and_kept(dtype):
    x = torch.rand(1, 3, 8, 8).to(dtype)
    assert check_images(x).dtype == dtype


def test_a_rounding_error_outside_the_range_suggests_clamping():
    x = torch.rand(1, 3, 8, 8)
    x[0, 0, 0, 0] = -1e-6
    with pytest.raises(InputError, match=r"rounding error outside \[0, 1\]: clamp them with input\.clamp\(0, 1\)") as err:
        check_images(x)
    assert "input_range" not in str(err.value)
    x[0, 0, 0, 0] = 1.0004
    with pytest.raises(InputError, match="clamp them"):
        check_images(x)


def test_images_in_minus_one_one_still_suggest_the_range():
    x = torch.rand(1, 3, 8, 8) * 2 - 1
    with pytest.raises(InputError, match="input_range='-1,1'"):
        check_images(x)
    with pytest.raises(InputError, match="divide by 255"):
        check_images(torch.rand(1, 3, 8, 8) * 255)


def test_meta_tensors_are_refused_before_any_value_is_read():
    with pytest.raises(InputError, match="meta device and has no values"):
        check_images(torch.empty(1, 3, 8, 8, device="meta"))
    with pytest.raises(InputError, match="meta device"):
        check_pair(torch.rand(1, 3, 8, 8), torch.empty(1, 3, 8, 8, device="meta"))


def test_complex_and_integer_dtypes_name_the_fix():
    with pytest.raises(InputError, match="real part or the magnitude"):
        check_images(torch.rand(1, 3, 4, 4, dtype=torch.complex64))
    with pytest.raises(InputError, match=r"\.float\(\) / 255"):
        check_images(torch.zeros(1, 3, 4, 4, dtype=torch.uint8))


def test_mixed_dtype_pairs_are_accepted():
    a, b = check_pair(torch.rand(1, 3, 8, 8, dtype=torch.float64), torch.rand(1, 3, 8, 8, dtype=torch.float16))
    assert (a.dtype, b.dtype) == (torch.float64, torch.float16)
