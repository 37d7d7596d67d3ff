"""Models: load a diffusers pipeline offline (`loading`) and give every architecture the same small
interface (`adapters`). Each architecture is one module here (`sd15`, `sdxl`, `deepfloyd_if`, `sd3`) that
declares its adapter, builders, cost table, layer maps and edit defaults and registers them
(`registry`). `load_model` is the entry point."""

from harness.models.adapters import DTYPES, GenerationConfig, ModelAdapter, ModelInfo, ModelLoadError
from harness.models.deepfloyd_if import IFAdapter
from harness.models.loading import PLANT_SEP, load_model, locate, resolve_device, resolve_dtype, set_reproducible
from harness.models.sd3 import SD3Adapter
from harness.models.sd15 import SD15Adapter
from harness.models.sdxl import SDXLAdapter

__all__ = ["DTYPES", "PLANT_SEP", "GenerationConfig", "IFAdapter", "ModelAdapter", "ModelInfo",
           "ModelLoadError", "SD15Adapter", "SD3Adapter", "SDXLAdapter", "load_model", "locate", "resolve_device",
           "resolve_dtype", "set_reproducible"]
