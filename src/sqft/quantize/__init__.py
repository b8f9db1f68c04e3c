"""Quantization: primitives, sparsity-preserving GPTQ, RTN, GPTQ checkpoint packing and loading."""
