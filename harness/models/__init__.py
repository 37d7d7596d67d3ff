"""Models: load a diffusers pipeline offline (`loading`) and give every architecture the same small
interface (`adapters`). `load_model` is the entry point."""

from harness.models.adapters import (
                                     ADAPTERS,
                                     DTYPES,
                                     GenerationConfig,
                                     IFAdapter,
                                     ModelAdapter,
                                     ModelInfo,
                                     ModelLoadError,
                                     SD3Adapter,
                                     SD15Adapter,
                                     SDXLAdapter,
)
from harness.models.loading import PLANT_SEP, load_model, locate, resolve_device, resolve_dtype, set_reproducible

__all__ = ["ADAPTERS", "DTYPES", "PLANT_SEP", "GenerationConfig", "IFAdapter", "ModelAdapter", "ModelInfo",
           "ModelLoadError", "SD15Adapter", "SD3Adapter", "SDXLAdapter", "load_model", "locate", "resolve_device",
           "resolve_dtype", "set_reproducible"]
