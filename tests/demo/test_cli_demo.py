"""``lossnet demo`` on the command line: bad input is a clear error, not a traceback."""
from lossnet.cli.main import main


def test_demo_refuses_zero_workers(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "--workers must be at least 1, got 0" in err
    assert not (tmp_path / "report.html").exists()


def test_demo_flags_reach_the_settings(monkeypatch, tmp_path):
    import lossnet.demo as demo

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda out, seed, restart, settings: seen.update(
        out=out, seed=seed, restart=restart, settings=settings))
    assert main(["demo", "--out", str(tmp_path), "--quick", "--restart", "--kumar", "--workers", "3",
                 "--seed", "5"]) == 0
    s = seen["settings"]
    assert (seen["out"], seen["seed"], seen["restart"]) == (str(tmp_path), 5, True)
    assert (s.train, s.kumar, s.workers, s.n_per_subset) == (False, True, 3, 40)
