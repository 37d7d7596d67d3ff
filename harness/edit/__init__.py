"""Editing: change what a text-to-image model does with a concept, in closed form or at inference time.

Localization is for editing. Once a sweep has found the few layers that carry "van gogh", "the President"
or a rendered word, these modules change those layers — and only those:

* **Closed-form weight edits** (`solver`): TIME, UCE, DiffQuickFix and LocoEdit are one ridge regression
  per edited matrix, W = (λ W_old C0 + Σ v kᵀ + Σ W_old p pᵀ)(λ C0 + Σ k kᵀ + Σ p pᵀ)⁻¹, with different
  keys k, values v, λ and preserve set p (docs/methods.md §11); MEMIT replaces the λI prior by a key
  covariance C0. `diffquickfix`, `locoedit`, `uce`, `time_edit` only decide keys, values and matrices.
* **Inference-time edits** (`neurons`, `text_patch`): nothing is written into the weights; a spec file
  says what to do at which layers, and `install.install_edit(pipe, spec)` puts hooks on any diffusers
  pipeline (a job's `edit: FILE` does the same inside the harness).

`loco edit EDIT.yaml --out DIR` (`harness/cli/edit.py`) validates the spec (`spec`), runs the editor, and writes either a
complete diffusers directory plus a small delta (`delta`: revert and compose) or an inference-time spec.
`evaluate` compares an edited model with its original on the same prompts.

Vocabulary (issue 8): `concept` = the words in the prompt that carry the knowledge ("van gogh");
`target` = what they should mean after the edit ("painting"); `attribute` = the category (style, object,
fact, text).
"""
