"""Running a sweep: plan units → pack rows into batches → a worker runs each batch in one pass → dispatch.

* `plan`: the job and the model's site table become variants and work units (prompt shard × seeds ×
  variant chunk), with stable ids so an interrupted sweep resumes.
* `packing`: inside a unit, samples go into batches of at most `batch_size`, each with the control and
  donor/clean samples it is measured against or copies from.
* `worker`: holds one model for the whole sweep and turns a unit into result rows (generation with
  out-of-memory back-off, scoring, `harness.results.schema.build_row`); `probe` sizes its batches.
* `scoring`: the model-backed scorers (CLIP, OCR, ...), in their own actor on Ray.
* `dispatch`: who runs the units — this process (`local`) or Ray actors (`ray_pool`) — chosen in one
  place, `open_backend`; `ray_pool.run_groups` runs several models' pools side by side
  (`harness.multisweep`), and `ray_logs` keeps Ray's own error lines out of the output.
"""
