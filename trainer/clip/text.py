"""CLIP's text encoder fed with prompt embeddings, and CLIP-ReID's identity prompt learner."""

from __future__ import annotations

import re
from functools import lru_cache

import open_clip
import torch
from open_clip.model import CLIP
from torch import nn


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


def fill_template(template: str, slots: dict[str, int]) -> tuple[str, dict[str, list[int]]]:
    """Replace each ``{name}`` in ``template`` by ``slots[name]`` placeholder words.

    Returns the text and, per slot, the token positions (in the tokenized prompt, counting the
    start-of-text token) that learnable vectors replace. CLIP's BPE splits on words first, so
    counting the tokens of the text before a slot gives its position.
    """
    names = re.findall(r"\{(\w+)\}", template)
    if len(set(names)) != len(names):
        raise ValueError(f"prompt template {template!r}: a slot appears twice")
    missing = [n for n in slots if n not in names]
    unknown = [n for n in names if n not in slots]
    if missing or unknown:
        raise ValueError(
            f"prompt template {template!r}: slots {unknown} have no token count, slots {missing} are missing"
        )
    text, positions = template, {}
    for name in names:
        before = text.split("{" + name + "}")[0]
        start = 1 + count_bpe_tokens(before)
        positions[name] = list(range(start, start + slots[name]))
        text = text.replace("{" + name + "}", " ".join(["X"] * slots[name]), 1)
    return text, positions


class SlotPrompts(nn.Module):
    """Fixed prompt texts whose slot positions are overwritten by learnable vectors.

    ``base`` [P, L, W] holds the embedded fixed words of P prompts and ``positions`` [P, S] the
    S slot positions of each; :meth:`fill` writes learnable vectors there.
    """

    tokens: torch.Tensor  # buffers (register_buffer)
    base: torch.Tensor
    positions: torch.Tensor

    def __init__(self, text_encoder: TextEncoder, texts: list[str], positions: list[list[int]]) -> None:
        super().__init__()
        tokens = tokenize(texts, text_encoder.context_length)
        with torch.no_grad():
            base = text_encoder.embed_tokens(tokens)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("base", base.clone())  # saved: it depends on the (pretrained) token embedding
        self.register_buffer("positions", torch.tensor(positions, dtype=torch.long), persistent=False)

    def fill(self, vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """vectors [N, S, W] -> (prompt embeddings [N, L, W], token ids [N, L]).

        With a single prompt text (P = 1) it is repeated N times; otherwise N must equal P.
        """
        n, many = vectors.shape[0], self.base.shape[0]
        rows = (
            torch.arange(n, device=self.base.device)
            if many > 1
            else torch.zeros(n, dtype=torch.long, device=self.base.device)
        )
        prompts = self.base[rows].clone()
        prompts[torch.arange(n, device=rows.device)[:, None], self.positions[rows]] = vectors.to(prompts.dtype)
        return prompts, self.tokens[rows]


class PromptLearner(nn.Module):
    """ "A photo of a X X X X person." with ``n_ctx`` learnable tokens per identity (CLIP-ReID).

    The template may hold several named slots (AG-ReID's attribute prompts:
    ``"A photo of a {gender} person with {hair} hair"``); ``slots`` gives each one's token count
    and ``ctx`` [num_classes, sum(slots), W] holds every identity's tokens in slot order. Only
    ``ctx`` trains (stage 1); the fixed words are embedded once.
    """

    def __init__(
        self,
        text_encoder: TextEncoder,
        num_classes: int,
        template: str = "A photo of a {ctx} person.",
        n_ctx: int = 4,
        slots: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        slots = slots or {"ctx": n_ctx}
        text, positions = fill_template(template, slots)
        self.slot_positions = positions
        self.prompts = SlotPrompts(text_encoder, [text], [[p for ps in positions.values() for p in ps]])
        n_tokens = sum(slots.values())
        self.ctx = nn.Parameter(torch.empty(num_classes, n_tokens, text_encoder.width))
        nn.init.normal_(self.ctx, std=0.02)
        self.n_ctx = n_tokens
        self.num_classes = num_classes

    @property
    def tokens(self) -> torch.Tensor:
        return self.prompts.tokens

    def forward(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """labels [N] -> (prompt embeddings [N, L, W], token ids [N, L])."""
        return self.prompts.fill(self.ctx[labels])


def phrase_token_init(text_encoder: TextEncoder, phrases: list[str], n_ctx: int) -> torch.Tensor:
    """[P, n_ctx, W] context vectors initialised from each phrase's own token embeddings.

    SAGA-ReID's release starts each anchor's learnable context from its phrase: ``n_ctx``
    tokens sampled evenly from the phrase's BPE tokens, or all of them followed by their mean
    when the phrase is shorter. With pretrained CLIP the anchors so start apart, in meaning.
    """
    out = torch.empty(len(phrases), n_ctx, text_encoder.width)
    weight = text_encoder.token_embedding.weight.detach().float()
    for k, phrase in enumerate(phrases):
        emb = weight[torch.tensor(_tokenizer(77).encode(phrase), dtype=torch.long)]
        if len(emb) >= n_ctx:
            out[k] = emb[torch.linspace(0, len(emb) - 1, n_ctx).long()]
        else:
            out[k, : len(emb)] = emb
            out[k, len(emb) :] = emb.mean(0)
    return out


class SharedContextPrompts(nn.Module):
    """Several phrase prompts with learnable context tokens (CoOp-style).

    RGANet's body-region prompts and SAGA's anchor phrases: ``template`` holds ``{ctx}`` and
    ``{phrase}``; ``ctx`` is the only parameter: [n_ctx, W] shared by every phrase, or, with
    ``per_phrase``, [P, n_ctx, W], one context per phrase (SAGA-ReID's per-anchor context),
    initialised from each phrase's token embeddings (:func:`phrase_token_init`) plus a little
    noise. The text encoder is passed to :meth:`forward` rather than held, so it is not
    registered twice in the model.

    In eval mode the features are constants: they are computed once and cached, so inference
    (and the exported graph) never runs the text encoder. ``train()`` drops the cache.
    """

    def __init__(
        self, text_encoder: TextEncoder, template: str, phrases: list[str], n_ctx: int, per_phrase: bool = False
    ) -> None:
        super().__init__()
        if "{phrase}" not in template:
            raise ValueError(f"prompt template {template!r} needs a {{phrase}} slot")
        texts, positions = [], []
        for phrase in phrases:
            text, pos = fill_template(template.replace("{phrase}", phrase), {"ctx": n_ctx})
            texts.append(text)
            positions.append(pos["ctx"])
        self.prompts = SlotPrompts(text_encoder, texts, positions)
        if per_phrase:
            init = phrase_token_init(text_encoder, list(phrases), n_ctx)
            self.ctx = nn.Parameter(init + 0.01 * torch.randn_like(init))
        else:
            self.ctx = nn.Parameter(torch.empty(n_ctx, text_encoder.width))
            nn.init.normal_(self.ctx, std=0.02)
        self.phrases = list(phrases)
        self._cached: torch.Tensor | None = None

    def train(self, mode: bool = True) -> SharedContextPrompts:
        if mode:
            self._cached = None
        return super().train(mode)

    def forward(self, text_encoder: TextEncoder) -> torch.Tensor:
        """-> [P, E] text features of the P phrase prompts (unnormalised)."""
        if not self.training and self._cached is not None:
            return self._cached
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.expand(len(self.phrases), -1, -1)
        prompts, tokens = self.prompts.fill(ctx)
        features = text_encoder(prompts, tokens)
        if not self.training:
            self._cached = features.detach()
        return features
