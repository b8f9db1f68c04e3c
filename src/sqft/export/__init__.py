"""Export a merged model where people run models: GGUF (llama.cpp, Ollama, LM Studio) and compressed-tensors
(vLLM). One writer module per format, each "state dict + config in → files out"; the export stage
(`sqft.stages.export.run_export`) loads the artifact and writes through `atomic_output` with a manifest."""

from sqft.export.api import FORMATS, ExportConfig, check_export, write_export

__all__ = ["FORMATS", "ExportConfig", "check_export", "write_export"]
