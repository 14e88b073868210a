"""A GPT-2 style language model and its sampling loop, written as PyTorch code.

Run: python3 examples/gpt.py

Only the three imports below name graphc; with ``import torch`` in their place the file
is a PyTorch program (tests/models/ runs it both ways and compares). The demo compiles
the model in place (``model.compile()``), then generates 100 tokens: the sequence grows
by one token per step and is cropped to the last ``block_size`` tokens, and the compiled
forward serves every length with one program.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import graphc as torch
import graphc.nn as nn
import graphc.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 96
    block_size: int = 32
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    # True: F.scaled_dot_product_attention(is_causal=True); False: a tril mask buffer
    # sliced to [:T, :T] (the older way many model files still use)
    use_sdpa: bool = True


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.attn_drop = nn.Dropout(cfg.dropout)
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.use_sdpa = cfg.use_sdpa
        if not cfg.use_sdpa:
            n = cfg.block_size
            self.register_buffer("mask", torch.tril(torch.ones(n, n)).view(1, 1, n, n),
                                 persistent=False)

    def forward(self, x):
        B, T, C = x.size()
        heads = [t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                 for t in self.qkv(x).split(C, dim=2)]
        q, k, v = heads
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
            att = self.attn_drop(F.softmax(att, dim=-1))
            y = att @ v
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.up = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.act = nn.GELU(approximate="tanh")
        self.down = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.down(self.act(self.up(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = FeedForward(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied input and output embeddings
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("down.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, targets=None):
        b, t = idx.size()
        torch._assert(t <= self.cfg.block_size, "sequence longer than block_size")
        pos = torch.arange(0, t, dtype=torch.long, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                               ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay: float, lr: float, betas=(0.9, 0.95)):
        """AdamW with weight decay on the matrices only (not on biases and norms)."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        groups = [{"params": [p for p in params.values() if p.dim() >= 2],
                   "weight_decay": weight_decay},
                  {"params": [p for p in params.values() if p.dim() < 2], "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, greedy: bool = False, generator=None):
        """Append ``max_new_tokens`` tokens to ``idx`` (B, T), one forward per token."""
        for _ in range(max_new_tokens):
            ctx = idx if idx.size(1) <= self.cfg.block_size else idx[:, -self.cfg.block_size:]
            logits, _ = self(ctx)
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("Inf")
            probs = F.softmax(logits, dim=-1)
            if greedy:
                nxt = torch.argmax(probs, dim=-1, keepdim=True)
            else:
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)
            idx = torch.cat((idx, nxt), dim=1)
        return idx


def main() -> int:
    import graphc

    graphc.manual_seed(0)
    cfg = GPTConfig()
    model = GPT(cfg).eval()
    print(f"GPT: {model.num_params()} parameters, block_size {cfg.block_size}")
    prompt = graphc.randint(0, cfg.vocab_size, (2, 5))
    eager_tokens = model.generate(prompt, 100, greedy=True)

    model.compile()  # self(ctx) inside generate() now runs the compiled program
    compiled_tokens = model.generate(prompt, 100, greedy=True)
    same = graphc.equal(eager_tokens, compiled_tokens)
    stats = graphc.compiler.compiled_function(model)
    print(f"greedy tokens, compiled == eager over 100 new tokens: {same}")
    print(f"compiled programs: {len(stats.entries)}, recompiles: {len(stats.recompiles)}, "
          f"eager runs: {len(stats.eager_runs)}, windows copied to contiguous: "
          f"{stats.layout_copies}")
    for r in stats.recompiles:
        print(f"  {r}")
    sampled = model.generate(prompt, 20, top_k=10, generator=graphc.Generator().manual_seed(1))
    print(f"sampled (top_k=10): {sampled[0, 5:].tolist()}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
