"""CLIP's text encoder fed with prompt embeddings, and CLIP-ReID's identity prompt learner."""
from __future__ import annotations

from functools import lru_cache

import open_clip
import torch
from open_clip.model import CLIP
from torch import nn

CTX_SLOT = "{ctx}"


class TextEncoder(nn.Module):
    """CLIP text transformer that takes token *embeddings* instead of token ids.

    Prompt learning replaces some token embeddings with learnable vectors, so the encoder must
    start after the embedding lookup. ``tokens`` [N, L] is only used to find each prompt's
    end-of-text position (the largest token id), where CLIP pools.
    """

    def __init__(self, clip: CLIP) -> None:
        super().__init__()
        self.transformer = clip.transformer
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.width = clip.token_embedding.embedding_dim
        self.context_length = clip.positional_embedding.shape[0]
        self.output_dim = clip.text_projection.shape[1]

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(tokens)

    def forward(self, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """prompts [N, L, W] embeddings, tokens [N, L] ids -> [N, E] text features (unnormalised)."""
        x = prompts + self.positional_embedding.to(prompts.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return x @ self.text_projection


@lru_cache(maxsize=4)
def _tokenizer(context_length: int):
    """CLIP's BPE tokenizer (the vocabulary ships with open_clip: no download)."""
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)


def tokenize(texts: list[str], context_length: int = 77) -> torch.Tensor:
    return _tokenizer(context_length)(texts)


def count_bpe_tokens(text: str) -> int:
    """Number of BPE tokens ``text`` becomes (without start/end tokens)."""
    return len(_tokenizer(77).encode(text)) if text.strip() else 0


class PromptLearner(nn.Module):
    """"A photo of a X X X X person." with ``n_ctx`` learnable tokens per identity (CLIP-ReID).

    The fixed words are embedded once with CLIP's token embedding and kept as buffers; only
    ``ctx`` [num_classes, n_ctx, W] trains (stage 1).
    """

    def __init__(self, text_encoder: TextEncoder, num_classes: int, template: str = "A photo of a {ctx} person.", n_ctx: int = 4) -> None:
        super().__init__()
        if template.count(CTX_SLOT) != 1:
            raise ValueError(f"prompt template must contain {CTX_SLOT} exactly once: {template!r}")
        before = template.split(CTX_SLOT)[0]
        text = template.replace(CTX_SLOT, " ".join(["X"] * n_ctx))
        tokens = tokenize([text], text_encoder.context_length)
        start = 1 + count_bpe_tokens(before)  # 1: the start-of-text token
        with torch.no_grad():
            embedding = text_encoder.embed_tokens(tokens)
        self.register_buffer("tokens", tokens)
        self.register_buffer("prefix", embedding[:, :start].clone())
        self.register_buffer("suffix", embedding[:, start + n_ctx :].clone())
        self.ctx = nn.Parameter(torch.empty(num_classes, n_ctx, text_encoder.width))
        nn.init.normal_(self.ctx, std=0.02)
        self.n_ctx = n_ctx
        self.num_classes = num_classes

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """labels [N] -> (prompt embeddings [N, L, W], token ids [N, L])."""
        n = labels.shape[0]
        ctx = self.ctx[labels]
        prompts = torch.cat([self.prefix.expand(n, -1, -1), ctx.to(self.prefix.dtype), self.suffix.expand(n, -1, -1)], dim=1)
        return prompts, self.tokens.expand(n, -1)
