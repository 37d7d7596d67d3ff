"""Ray's "(raylet) ..." error lines (worker deaths the actor pool already handles) go to the run directory's
ray-errors.log instead of the sweep's output; everything else Ray prints passes through unchanged."""

import ray._private.worker as ray_worker

from harness.run.ray_logs import FILENAME, route_ray_errors


def test_raylet_messages_go_to_the_run_directory_and_others_pass_through(tmp_path, capsys, monkeypatch):
    printed = []
    monkeypatch.setattr(ray_worker, "print_to_stdstream", lambda data, ignore_prefix: printed.append(data))
    monkeypatch.setattr(ray_worker, "_loco_original_print", None, raising=False)  # undone after the test
    route_ray_errors(tmp_path / "run")
    died = "A worker died or was killed while executing a task by an unexpected system error."
    ray_worker.print_to_stdstream({"lines": [died], "pid": "raylet", "is_err": False}, ignore_prefix=False)
    actor_line = {"lines": ["hello from an actor"], "pid": 1234, "is_err": False}
    ray_worker.print_to_stdstream(actor_line, ignore_prefix=False)
    assert (tmp_path / "run" / FILENAME).read_text() == died + "\n"
    assert printed == [actor_line]  # only the actor's own output reached the original printer
    assert "worker died" not in capsys.readouterr().out


def test_routing_again_sends_later_messages_to_the_new_run(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_worker, "print_to_stdstream", lambda data, ignore_prefix: None)
    monkeypatch.setattr(ray_worker, "_loco_original_print", None, raising=False)  # undone after the test
    route_ray_errors(tmp_path / "a")
    route_ray_errors(tmp_path / "b")
    ray_worker.print_to_stdstream({"lines": ["node died"], "pid": "raylet"}, False)
    assert not (tmp_path / "a" / FILENAME).exists() and (tmp_path / "b" / FILENAME).read_text() == "node died\n"
