"""The 8B's untrained chat-token rows: trained as PEFT trainable tokens, kept by the legacy merge (v2's choice).

Base Llama-3-8B never trained the embedding rows of <|start_header_id|>, <|end_header_id|> and <|eot_id|>.
recipes/openbiollm-8b/v2/sft.yaml trains them with ``peft_trainable_token_indices`` and merges with
``merge_method: legacy``. These tests show why, with PEFT and Axolotl's own merge code on a tiny Llama whose
chat-token rows are zero, as the base model's nearly are: the adapter holds the trained rows, PEFT's merge
(Axolotl's legacy merge) gives the trained model exactly, Axolotl 0.19's default memory-efficient merge drops
the rows, and ``fix_untrained_tokens`` cannot be used on a model whose embeddings LoRA leaves frozen.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open

CHAT_TOKENS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
CONVERSATION = [{"role": "user", "content": "What does the thyroid make?"},
                {"role": "assistant", "content": "Thyroxine."}]


@pytest.fixture(scope="module")
def untrained_base(tiny_llama3, tmp_path_factory) -> tuple[Path, list[int], int, torch.Tensor]:
    """The tiny Llama with its chat-token rows zeroed (base Llama-3-8B's are near zero), the ids, and a chat row."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    out = tmp_path_factory.mktemp("untrained-base")
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama3)
    model = LlamaForCausalLM.from_pretrained(tiny_llama3)
    chat = [tokenizer.convert_tokens_to_ids(token) for token in CHAT_TOKENS]
    with torch.no_grad():
        model.model.embed_tokens.weight[chat] = 0
        model.lm_head.weight[chat] = 0
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    return out, chat, chat[-1], ids


def lora_config(chat: list[int], eot: int):
    """The v2 recipe's adapter shape, small: LoRA on linear layers plus the chat rows (lm_head: <|eot_id|> only)."""
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "gate_proj"], task_type="CAUSAL_LM",
                      trainable_token_indices={"embed_tokens": chat, "lm_head": [eot]})


@pytest.fixture(scope="module")
def trained(untrained_base, tmp_path_factory):
    """A few real optimizer steps on one chat row; the saved adapter and the trained model's logits."""
    from peft import get_peft_model
    from transformers import LlamaForCausalLM

    base, chat, eot, ids = untrained_base
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base), lora_config(chat, eot))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    adapter = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(adapter)
    return adapter, logits


def test_trained_chat_token_rows_are_saved_in_the_adapter(trained):
    adapter, _ = trained
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as handle:
        keys = set(handle.keys())
        rows = {key: handle.get_tensor(key) for key in keys if "trainable_tokens_delta" in key}
    assert set(rows) == {"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta",
                         "base_model.model.lm_head.token_adapter.trainable_tokens_delta"}
    assert all(row.abs().sum() > 0 for row in rows.values())  # trained away from the zero rows they started at


def test_legacy_merge_gives_exactly_the_trained_model(untrained_base, trained):
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    base, _, eot, ids = untrained_base
    adapter, logits = trained
    merged = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    with torch.no_grad():
        # atol 1e-5: merged weights (W + BA summed once) against the adapter's separate path, both fp32 (relative
        # rounding ~1e-7 on logits of order 1); an unmerged or wrong adapter differs by orders more
        assert torch.allclose(merged(input_ids=ids).logits, logits, atol=1e-5)
    assert merged.model.embed_tokens.weight[eot].abs().sum() > 0 and merged.lm_head.weight[eot].abs().sum() > 0


def test_default_memory_efficient_merge_drops_the_trained_rows(untrained_base, trained, tmp_path):
    """Why the v2 recipe names ``merge_method: legacy``: Axolotl 0.19's default merge folds LoRA tensors only."""
    from axolotl.cli.utils.lora_merge import merge_lora_sharded_efficient
    from transformers import LlamaForCausalLM

    base, chat, eot, ids = untrained_base
    adapter, logits = trained
    merge_lora_sharded_efficient(base_model_path=base, lora_adapter_path=adapter, output_path=tmp_path / "merged",
                                 device="cpu", simulate_nf4=False)
    merged = LlamaForCausalLM.from_pretrained(tmp_path / "merged")
    assert merged.model.embed_tokens.weight[chat].abs().sum() == 0 and merged.lm_head.weight[eot].abs().sum() == 0
    with torch.no_grad():
        assert not torch.allclose(merged(input_ids=ids).logits, logits, atol=1e-3)


def test_fix_untrained_tokens_fails_beside_trainable_tokens(untrained_base):
    """Axolotl 0.19's fix_untrained_tokens cannot run on a model whose chat rows are PEFT trainable tokens."""
    from axolotl.contribs.lgpl import fix_untrained_tokens
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    base, chat, eot, ids = untrained_base
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base), lora_config(chat, eot))
    with pytest.raises(KeyError, match="weight"):
        fix_untrained_tokens(model, AutoTokenizer.from_pretrained(base), Dataset.from_dict({"input_ids": ids.tolist()}),
                             token_ids_to_fix=chat)


def test_fix_untrained_tokens_under_lora_changes_the_training_model_only(untrained_base, tmp_path):
    """v1's note, verified: with LoRA alone the fix rewrites the base rows in memory; the adapter does not carry
    them, so the merge, which reloads the base, gives back the untrained rows."""
    from axolotl.contribs.lgpl import fix_untrained_tokens
    from datasets import Dataset
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    base, chat, eot, ids = untrained_base
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules=["q_proj"]))
    fix_untrained_tokens(model, AutoTokenizer.from_pretrained(base), Dataset.from_dict({"input_ids": ids.tolist()}),
                         token_ids_to_fix=chat)
    assert model.get_input_embeddings().weight[eot].abs().sum() > 0  # fixed in the training model
    model.save_pretrained(tmp_path / "adapter")
    with safe_open(str(tmp_path / "adapter/adapter_model.safetensors"), "pt") as handle:
        names = list(handle.keys())
    assert names and not [name for name in names if "embed_tokens" in name or "lm_head" in name]
    merged = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(base), tmp_path / "adapter").merge_and_unload()
    assert merged.model.embed_tokens.weight[chat].abs().sum() == 0


def test_liger_fused_linear_cross_entropy_still_trains_the_eot_lm_head_row(untrained_base, monkeypatch):
    """Whether ``liger_fused_linear_cross_entropy`` may be used beside trainable tokens. Liger's Llama forward hands
    its fused loss ``lm_head.weight``, not the module; PEFT's trainable-token wrapper answers ``weight`` with the
    base matrix with the trained rows written in, so the <|eot_id|> row gets the same gradient as through the
    module. This runs Liger's own routing (``lce_maybe_trainable_lm_head``); only its Triton kernel, which needs
    a GPU, is replaced by the same loss in plain torch (mocked: there is no GPU here)."""
    import torch.nn.functional as F
    from liger_kernel.transformers.model import llama as liger_llama
    from peft import get_peft_model
    from transformers import LlamaForCausalLM

    def torch_loss(hidden_states, lm_head_weight, labels, hidden_size, shift_labels=None, **kwargs):
        logits = hidden_states.reshape(-1, hidden_size) @ lm_head_weight.T
        return F.cross_entropy(logits[:-1].float(), labels.reshape(-1)[1:])

    monkeypatch.setattr(liger_llama, "LigerForCausalLMLoss", torch_loss)
    base, chat, eot, ids = untrained_base
    model = get_peft_model(LlamaForCausalLM.from_pretrained(base), lora_config(chat, eot))
    causal_lm = model.base_model.model
    row = causal_lm.lm_head.token_adapter.trainable_tokens_delta["default"]
    hidden = causal_lm.model(input_ids=ids).last_hidden_state.detach()

    liger_llama.lce_maybe_trainable_lm_head(causal_lm, hidden, hidden.shape[-1], ids, None).backward()
    through_liger, row.grad = row.grad, None
    F.cross_entropy(causal_lm.lm_head(hidden)[0, :-1].float(), ids[0, 1:]).backward()  # the module's own path
    assert through_liger is not None and through_liger.abs().sum() > 0
    assert torch.allclose(through_liger, row.grad, atol=1e-6)  # fp32 matmul orders only (~1e-7 relative)
