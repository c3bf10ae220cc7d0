import os

import numpy as np
from PIL import Image

SMALL = [
    "--config.render.image_size=32",
    "--config.render.walkers=64",
    "--config.render.steps=16",
    "--config.render.pad=1",
    "--config.source.num_classes=20",
]


def test_render_writes_grid_and_individual_pngs(run, tmp_path):
    out = tmp_path / "grid"
    res = run(
        "experiments.render",
        f"--out={out}",
        "--vary=source.delta=0.01,0.1",
        "--num_shown=4",
        "--individual",
        *SMALL,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    grid = np.asarray(Image.open(out / "grid.png"))
    # 32 px images are shown enlarged 4x, pixel for pixel (128 px tiles).
    assert grid.shape[0] == 2 * (128 + 2) and grid.shape[2] == 3
    assert grid.std() > 10  # not a blank picture
    tile = grid[:128, -128:]  # the last class of the first row
    np.testing.assert_array_equal(tile[::4, ::4], tile[1::4, 1::4])  # 4x4 blocks
    files = sorted(f for f in os.listdir(out) if f.startswith("delta"))
    assert len(files) == 8, files
    assert "wrote" in res.stdout


def test_compare_official_draws_the_three_columns(run, tmp_path):
    out = tmp_path / "cmp.png"
    res = run("experiments.compare_official", f"--out={out}", "--size=96", "--zoom=32")
    assert res.returncode == 0, res.stderr[-2000:]
    shares = {
        line.split()[0] + line.split()[1]: float(line.split()[-1])
        for line in res.stdout.splitlines()
        if "neighbour share" in line
    }
    assert len(shares) == 3 and out.exists()
    official, paste = shares["officialgenerator"], shares["fractaljaxpatch='paste'"]
    assert abs(official - paste) < 0.05 and shares["fractaljaxpatch='union'"] > official + 0.2
