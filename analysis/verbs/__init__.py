"""The `loco` verbs that analyse runs; listed by dotted name in `harness.cli.registry.VERBS`."""
