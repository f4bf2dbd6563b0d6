"""The int8 text tower: a view of CLIP whose text Linear layers hold int8 weights, optionally with its
self-attention in bf16 (chosen per machine by `retrieval.models.precision`)."""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F

with warnings.catch_warnings():  # clip imports pkg_resources, which warns about its own deprecation
    warnings.simplefilter("ignore")
    from clip.model import CLIP


class Bf16SelfAttention(torch.nn.Module):
    """CLIP's text self-attention (`nn.MultiheadAttention`, sequence first, with CLIP's causal mask) with its
    two projections held in bf16: half the bytes a turn's text reads from them, computed on the CPU's bf16
    units. The weights are bf16 tensors, not Linear layers, so dynamic int8 quantization leaves them alone."""

    in_weight: torch.Tensor
    in_bias: torch.Tensor
    out_weight: torch.Tensor
    out_bias: torch.Tensor

    def __init__(self, attention: torch.nn.MultiheadAttention) -> None:
        super().__init__()
        self.heads = attention.num_heads
        self.register_buffer("in_weight", attention.in_proj_weight.detach().to(torch.bfloat16))
        self.register_buffer("in_bias", attention.in_proj_bias.detach().to(torch.bfloat16))
        self.register_buffer("out_weight", attention.out_proj.weight.detach().to(torch.bfloat16))
        self.register_buffer("out_bias", attention.out_proj.bias.detach().to(torch.bfloat16))

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, None]:  # `nn.MultiheadAttention`'s signature, as CLIP calls it (self-attention)
        length, batch, width = query.shape
        qkv = F.linear(query.to(torch.bfloat16), self.in_weight, self.in_bias).float()
        q, k, v = qkv.view(length, batch, 3, self.heads, width // self.heads).permute(2, 1, 3, 0, 4)
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # fp32 softmax; [n, heads, length, w]
        merged = heads.permute(2, 0, 1, 3).reshape(length, batch, width)
        return F.linear(merged.to(torch.bfloat16), self.out_weight, self.out_bias).float(), None


def quantized_text_view(model: CLIP, *, bf16_attention: bool = False) -> CLIP:
    """A shallow copy of `model` sharing every weight except the text transformer's: its MLP Linear layers
    hold int8 weights, one scale per output channel (dynamic quantization: activations are quantized per
    call). The attention projections stay fp32, as PyTorch's quantization leaves them, or with
    `bf16_attention` (CPUs with bf16 units) are held in bf16 (`Bf16SelfAttention`)."""
    transformer = copy.deepcopy(model.transformer)
    if bf16_attention:
        for block in transformer.resblocks:
            block.attn = Bf16SelfAttention(block.attn)
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao, not installed
        warnings.simplefilter("ignore")
        transformer = torch.ao.quantization.quantize_dynamic(
            transformer,
            {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
            dtype=torch.qint8,
        )
    view = copy.copy(model)
    view._modules = dict(model._modules)  # copy.copy shares the dict; replace the transformer in ours only
    view._modules["transformer"] = transformer
    return view
