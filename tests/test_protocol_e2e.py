"""The protocol search (experiments.search) end to end at a tiny size (about a minute: a
file of its own, so that the two pytest workers can split the suite's heaviest tests;
tests/test_gpu_protocol.py holds the GPU protocol's run)."""


def test_search_scores_variants_on_validation_against_their_random_init(run, tmp_path, data_dir):
    """experiments.search end to end, tiny: two variants that share the pre-training (B only
    changes the fine-tuning), each paired with its own random init, a table of validation
    numbers, and a rerun that computes nothing."""
    from test_sweep import TINY

    flags = [f"--config.{k}={v}" for k, v in TINY.items() if k != "pretrain.source.num_classes"]
    args = [
        "experiments.search",
        f"--workdir={tmp_path}/search",
        "--config.search.variants_run=('A', 'B')",
        "--config.sweep.seeds=(0,)",
        "--config.sweep.few_labels=0",
        f"--config.sweep.points_dir={tmp_path}/points",
        f"--config.sweep.store_dir={tmp_path}/store",
        f"--config.finetune.downstream.data_dir={data_dir}",
        "--config.finetune.downstream.val_size=200",
        *flags,
    ]
    res = run(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    import csv

    with open(tmp_path / "search" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["variant"], r["init"]) for r in rows] == [
        ("A", "random"), ("A", "pretrained"), ("B", "random"), ("B", "pretrained")
    ]  # fmt: skip
    assert rows[1]["pretrain_dir"] == rows[3]["pretrain_dir"]  # one pre-training, two uses
    assert len({r["dir"] for r in rows}) == 4
    table = (tmp_path / "search" / "summary.txt").read_text().splitlines()
    assert table[0].split()[:3] == ["variant", "seeds", "pretrain"]
    assert [line.split()[0] for line in table[1:]] == ["A", "B"]
    assert "finetune_val_top1" in table[0] and "validation top-1" in res.stdout
    a = rows[1]
    d = float(a["finetune_val_top1"]) - float(rows[0]["finetune_val_top1"])
    assert f"d {100 * d:+.1f}" in table[1]
    res = run(*args, "--only_finished")
    assert res.returncode == 0 and res.stdout.count("2 finished points read back") == 2
    assert "done earlier" not in res.stdout  # one line per variant, not one per point
