import torch

from nas_mnist.engine.augment import random_affine


def test_shapes_and_identity():
    x = torch.rand(7, 1, 28, 28)
    assert random_affine(x, rotate_deg=0, translate=0, scale=0) is x
    y = random_affine(x, rotate_deg=15, translate=0.1, scale=0.1,
                      generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.dtype == x.dtype


def test_rotation_exposes_black_not_grey_border():
    white = torch.ones(64, 1, 28, 28)
    out = random_affine(white, rotate_deg=45, translate=0, scale=0,
                        generator=torch.Generator().manual_seed(0))
    # corners of a rotated white square come from outside the image: black (0)
    # for most angles in +-45 degrees: exactly 0.0, not the grey of a normalised zero
    assert int((out[:, 0, 0, 0] == 0.0).sum()) > 40
    assert float(out.min()) >= 0.0  # never below black
    assert float(out[:, 0, 14, 14].min()) > 0.99  # the centre stays white


def test_augmentation_is_seeded():
    x = torch.rand(16, 1, 28, 28)
    run = lambda: random_affine(x, rotate_deg=10, translate=0.1, scale=0.1,  # noqa: E731
                                generator=torch.Generator().manual_seed(3))
    assert torch.equal(run(), run())


def test_augmentation_applied_with_a_probability():
    x = torch.rand(400, 1, 28, 28)
    full = random_affine(x, rotate_deg=10, translate=0.1, scale=0.1,
                         generator=torch.Generator().manual_seed(3))
    again = random_affine(x, rotate_deg=10, translate=0.1, scale=0.1,
                          generator=torch.Generator().manual_seed(3), p=1.0)
    assert torch.equal(full, again)  # p = 1: the older draws exactly
    half = random_affine(x, rotate_deg=10, translate=0.1, scale=0.1,
                         generator=torch.Generator().manual_seed(3), p=0.5)
    kept = (half == x).flatten(1).all(1)
    assert torch.equal(half[~kept], full[~kept])  # the others are the p = 1 transforms
    assert 150 < int(kept.sum()) < 250  # about half kept as they were
    assert torch.equal(random_affine(x, rotate_deg=10, translate=0.1, scale=0.1, p=0.0), x)
