"""The toyworld model organism: a procedural world (`world`, `render`), a small SD1.x-style model
trained on it from scratch (`model`, `train`), and the shipped weights that `model: toyworld` loads."""
