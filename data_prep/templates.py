"""Chat templates we render in plain Python: the same text as jinja2, without its per-call cost.

Rendering a conversation through transformers' sandboxed jinja2 environment costs some 40 µs, most of
the token-length stage on a large mixture. The templates here are recognised by their exact text and
rendered by a function that gives the same string; any other template goes through jinja2.
``tests/test_data_prep_tokens.py`` compares the two renderings on the bundled rows and on odd texts.
"""

from __future__ import annotations

from collections.abc import Callable

# Meta-Llama-3-8B-Instruct's and Meta-Llama-3-70B-Instruct's chat template, as published in their
# tokenizer_config.json (base_model_configs/ holds copies), the template OpenBioLLM trains with.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

Renderer = Callable[[list[dict[str, str]]], str]


def llama3_renderer(bos_token: str) -> Renderer:
    """Llama-3's template without a generation prompt: BOS, then each message as header, trimmed text, <|eot_id|>."""
    def render(chat: list[dict[str, str]]) -> str:
        body = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content'].strip()}<|eot_id|>"
                       for m in chat)
        return bos_token + body if chat else ""
    return render


def plain_renderer(template: str, special: dict[str, str]) -> Renderer | None:
    """A plain-Python renderer giving the template's exact text for string roles and contents, or None."""
    if template == LLAMA3_CHAT_TEMPLATE and isinstance(special.get("bos_token"), str):
        return llama3_renderer(special["bos_token"])
    return None
