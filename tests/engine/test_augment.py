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


def _centroid(images: torch.Tensor) -> torch.Tensor:
    """(row, column) of each image's centre of mass, in pixels."""
    idx = torch.arange(28, dtype=images.dtype)
    mass = images.sum(dim=(1, 2, 3))
    rows = (images.sum(dim=3)[:, 0] * idx).sum(dim=1) / mass
    cols = (images.sum(dim=2)[:, 0] * idx).sum(dim=1) / mass
    return torch.stack([rows, cols], dim=1)


def _square(n: int, lo: int, hi: int) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, lo:hi, lo:hi] = 1.0  # centred: pixel 13.5 is the middle of a 28-pixel side
    return x


def test_translate_moves_each_image_by_up_to_that_share_of_the_side_in_both_directions():
    x = _square(512, 12, 16)
    out = random_affine(x, rotate_deg=0, translate=0.1, scale=0,
                        generator=torch.Generator().manual_seed(0))
    shift = _centroid(out) - _centroid(x)
    assert shift.abs().max() <= 0.1 * 28 + 1e-3  # at most 2.8 pixels per axis
    for axis in (0, 1):  # the whole range is drawn, both ways, on each axis
        assert shift[:, axis].max() > 2.4 and shift[:, axis].min() < -2.4
    torch.testing.assert_close(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=1e-3, atol=0)


def test_scale_zooms_each_image_about_its_centre_by_up_to_that_share():
    x = _square(512, 6, 22)  # 16 x 16 lit pixels
    out = random_affine(x, rotate_deg=0, translate=0, scale=0.2,
                        generator=torch.Generator().manual_seed(0))
    area = out.sum(dim=(1, 2, 3)) / 256  # the zoom squared, 0.8^2 .. 1.2^2, give or take
    assert area.min() >= 0.64 - 0.04 and area.max() <= 1.44 + 0.04  # the edge pixels' share
    assert area.min() < 0.7 and area.max() > 1.35  # shrinks and grows
    assert (_centroid(out) - _centroid(x)).abs().max() < 0.01  # about the centre: no shift
