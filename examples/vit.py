"""A Vision Transformer, written as PyTorch code.

Run: python3 examples/vit.py

Only the three imports below name graphc (tests/models/ also runs this file with torch).
Patches come from a strided convolution, a learned class token is expanded over the
batch, and the encoder uses ``nn.MultiheadAttention`` and exact GELU.
"""

from __future__ import annotations

import graphc as torch
import graphc.nn as nn
import graphc.nn.functional as F


class PatchEmbedding(nn.Module):
    def __init__(self, image: int, patch: int, channels: int, dim: int):
        super().__init__()
        assert image % patch == 0, "image size must be a multiple of the patch size"
        self.num_patches = (image // patch) ** 2
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, patches, dim)


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        y = self.ln1(x)
        y, _ = self.attn(y, y, y, need_weights=False)
        x = x + y
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    def __init__(self, image: int = 32, patch: int = 8, channels: int = 3, dim: int = 64,
                 depth: int = 2, heads: int = 4, mlp_dim: int = 128, num_classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        self.patches = PatchEmbedding(image, patch, channels, dim)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, self.patches.num_patches + 1, dim))
        nn.init.normal_(self.pos_embedding, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp_dim, dropout)
                                      for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images):
        x = self.patches(images)
        cls = self.class_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embedding
        x = self.norm(self.blocks(self.drop(x)))
        return self.head(x[:, 0])


def main() -> int:
    import graphc

    graphc.manual_seed(0)
    model = ViT().eval()
    x = graphc.randn(4, 3, 32, 32)
    with graphc.no_grad():
        eager = model(x)
        compiled = graphc.compile(model)
        out = compiled(x)
    err = (out - eager).abs().max().item()
    probs = F.softmax(out, dim=-1)
    print(f"ViT: logits {tuple(out.shape)}, top class of image 0: {probs[0].argmax().item()}")
    print(f"max |compiled - eager| = {err:.2e} (tolerance 1e-04)")
    print(f"eager runs: {len(compiled.compiled.eager_runs)}")
    return 0 if err < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
