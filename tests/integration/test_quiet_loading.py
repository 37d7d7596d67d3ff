"""Loading a model from a diffusers folder prints no library progress bars (they would break the sweep's
one live display, and a worker loads its model again after every restart)."""

from harness.models import load_model


def test_loading_a_saved_pipeline_prints_no_progress_bars(sd15, tmp_path, capfd):
    sd15.pipe.save_pretrained(tmp_path / "model", safe_serialization=True)
    capfd.readouterr()
    loaded = load_model(str(tmp_path / "model"))
    out, err = capfd.readouterr()
    assert loaded.arch == sd15.arch
    assert "Loading pipeline components" not in err + out and "Loading weights" not in err + out
