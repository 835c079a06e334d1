"""The run's record: the progress GIF holds every epoch's grid, in order, in close colours."""

import numpy as np
from PIL import Image

from doggan.training.report import save_gif


def test_the_progress_gif_holds_every_grid_in_order_in_close_colours(tmp_path):
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 96)
    grids = []
    for k in range(3):  # smooth colour fields with a few flat patches, as sample grids have
        grid = np.stack([*np.meshgrid(ramp, ramp[::-1]), np.full((96, 96), 90.0 * k)], -1)
        grid[rng.integers(0, 80) :][:16, :16] = rng.integers(0, 256, 3)
        grids.append(grid.astype(np.uint8))
    frames = []
    for k, grid in enumerate(grids):
        frames.append(tmp_path / f"epoch_{k:04d}.png")
        Image.fromarray(grid).save(frames[-1])
    save_gif(frames, tmp_path / "progress.gif")
    gif = Image.open(tmp_path / "progress.gif")
    assert gif.n_frames == 3
    for k, grid in enumerate(grids):
        gif.seek(k)
        got = np.asarray(gif.convert("RGB"), np.float64)
        assert np.abs(got - grid).mean() < 6, k
        assert all(np.abs(got - other).mean() > 15 for j, other in enumerate(grids) if j != k)
