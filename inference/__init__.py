"""A trained model, used: what to load, how it answers, and llama.cpp's side of it.

    model_source        what to load: a run's merged/, else its adapter/ on its base; a model folder; a .gguf
    reply               one reply: the chat template, the card's decoding, stop on any terminator
    terminators         where a reply ends: eos and every end-of-turn token of the chat template
    card_usage          what the OpenBioLLM cards say about using the model (system prompt, 256 tokens, top_p)
    gguf_model          a GGUF file as a model to answer with, through llama.cpp's binding
    llama_cpp_tools     llama.cpp's converter, quantizer and binding: built once, cached (``make gguf-tools``)

May import common and data_prep. eval (the generation check, the scoring of GGUFs) and release (chat, generate,
build) import it; it imports neither, nor launch.
"""
