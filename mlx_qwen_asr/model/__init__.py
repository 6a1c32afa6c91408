"""The network and everything needed to build it: config, checkpoint reading, loading,
other projects' layouts, encoder, decoder, tokenizer, quantization, CPU kernels.
Imports nothing above itself (only errors and the other leaf helpers at the top)."""
