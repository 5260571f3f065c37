"""The CPU default teacher as a GGUF file, for the live llama-cpp-python test (needs the `gguf` package).

llama.cpp's own converter (convert_hf_to_gguf.py) ships only in its source tree; this writes the
same file for the default teacher's GPT-2 layout with the `gguf` package's writer: the
hyper-parameters, the byte-level BPE vocabulary and merges, and the 28 tensors (the Conv1D
weights transposed to llama.cpp's [out, in]; the output head is tied to the token embedding).
`add_bos=True` makes llama.cpp start every prompt with <|endoftext|>, which its echo needs to put
the prompt's log-probabilities at the right positions (see harness/teacher/server_probe.py).
"""

from __future__ import annotations

import json
from pathlib import Path

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
NAMES = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
         "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}


def write_gguf(model_dir: str | Path, out: str | Path, add_bos: bool = False) -> Path:
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    model_dir, out = Path(model_dir), Path(out)
    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens))), "token ids must be 0..V-1"
    specials = {t["id"]: t["content"] for t in tokenizer.get("added_tokens", [])}
    for i, content in specials.items():
        tokens[i] = content
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    eos = config["eos_token_id"]

    writer = gguf.GGUFWriter(str(out), "gpt2")
    writer.add_name("default-teacher")
    writer.add_block_count(config["n_layer"])
    writer.add_context_length(config["n_positions"])
    writer.add_embedding_length(config["n_embd"])
    writer.add_feed_forward_length(config.get("n_inner") or 4 * config["n_embd"])
    writer.add_head_count(config["n_head"])
    writer.add_layer_norm_eps(config["layer_norm_epsilon"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL for i in range(len(tokens))])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eos)
    writer.add_eos_token_id(eos)
    writer.add_unk_token_id(eos)
    writer.add_add_bos_token(add_bos)
    for name, array in load_file(str(model_dir / "model.safetensors")).items():
        name = name.removeprefix("transformer.")
        if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
            continue  # causal-mask buffers; the head is tied to wte
        if name.endswith(CONV1D):
            array = array.T
        if name.startswith("h."):
            _, layer, rest = name.split(".", 2)
            part, kind = rest.rsplit(".", 1)
            name = f"blk.{layer}.{NAMES[part]}.{kind}"
        else:
            name = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
                    "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}[name]
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
