"""Export a merged model where people run models: GGUF (llama.cpp, Ollama, LM Studio) and compressed-tensors
(vLLM). One writer module per format, each "state dict + config in → files out"; `api.export_to_dir` loads the
artifact and writes through `atomic_output` with a manifest."""

from sqft.export.api import FORMATS, ExportConfig, export_to_dir

__all__ = ["FORMATS", "ExportConfig", "export_to_dir"]
