"""The judge: a second stage that reads a request and a picture region by region and says how well the picture
does what was asked.

The Combiner (CLIP4Cir) fuses the reference and the words into one vector, and one vector ranked by cosine
orders pictures by their whole look: a picture that merely looks like the reference outranks one that does
what was asked (measured on the shapes world: the exact target's own feature as the query puts a picture that
does the edit first only 13% of the time). The judge re-ranks the Combiner's first candidates with what one
vector cannot hold: the words token by token, the reference and each candidate as their regions (the grid
cells of the image tower's last map, projected into the joint space the way its attention pool projects
them), and attention between them, so "one fewer star than before" can be compared cell by cell.

- `image_regions` / `text_tokens`: the towers' per-region and per-token features, in the joint space.
- `Judge`: a small transformer. `encode_request` reads the words and the reference's regions once per turn;
  `score` reads each candidate's regions against it (cross-attention, and an object vocabulary where the
  config has one) and adds the Combiner's cosine.
- Checkpoints: `{"kind": "judge", "config": {...}, "state_dict": ..., "clip_sha256": the CLIP it reads}`
  (`save_judge`, `load_judge`; `retrieval.fusion.judging.judge_for` checks the CLIP).
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from clip.model import CLIP, ModifiedResNet, VisionTransformer
from torch import nn


@torch.no_grad()
def image_regions(model: CLIP, pixels: torch.Tensor) -> torch.Tensor:
    """Each picture's regions in the joint space, [n, cells, dim]: for a ResNet tower, the last map's cells
    through the attention pool's value and output projections (its output is a weighted sum of these); for a
    ViT tower, the patch tokens through the final norm and projection."""
    visual = model.visual
    x = pixels.to(next(visual.parameters()).dtype)
    if isinstance(visual, ModifiedResNet):
        x = visual.relu1(visual.bn1(visual.conv1(x)))
        x = visual.relu2(visual.bn2(visual.conv2(x)))
        x = visual.avgpool(visual.relu3(visual.bn3(visual.conv3(x))))
        x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
        cells = x.flatten(2).permute(0, 2, 1)  # [n, h*w, C]
        pool = visual.attnpool
        cells = cells + pool.positional_embedding[1 : 1 + cells.shape[1]].to(cells.dtype)
        return pool.c_proj(pool.v_proj(cells)).float()
    if isinstance(visual, VisionTransformer):
        x = visual.conv1(x).flatten(2).permute(0, 2, 1)
        cls = visual.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        x = visual.transformer(visual.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
        return (visual.ln_post(x[:, 1:]) @ visual.proj).float()
    raise TypeError(f"no regions for an image tower of type {type(visual).__name__}")


@torch.no_grad()
def text_tokens(model: CLIP, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text's tokens in the joint space, [n, L, dim], and which are real, [n, L] (start to end token);
    the end token's row is the text's CLIP feature."""
    n_ctx = tokens.shape[-1]
    x = model.token_embedding(tokens).type(model.dtype) + model.positional_embedding[:n_ctx].type(model.dtype)
    x = model.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = model.ln_final(x).type(model.dtype) @ model.text_projection
    end = tokens.argmax(dim=-1, keepdim=True)
    real = torch.arange(n_ctx)[None, :] <= end
    return x.float(), real


@dataclass(frozen=True)
class JudgeConfig:
    dim: int  # the joint space's width (CLIP's embed_dim)
    cells: int  # regions per picture
    context: int  # text positions
    width: int = 128
    heads: int = 4
    objects: int = 0  # an object vocabulary the regions are read into (shapes: 61), or 0 for none
    request_layers: int = 2
    candidate_layers: int = 2


class ReadRequest(NamedTuple):
    """A request as `Judge.encode_request` read it: memory [b, M, width], its padding mask [b, M], and, with
    an object vocabulary and a reference, the reference's regions read as objects and the objects the
    request wants in each cell (both [b, cells, objects], distributions)."""

    memory: torch.Tensor
    pad: torch.Tensor
    objects: torch.Tensor | None
    wanted: torch.Tensor | None


class CandidateBlock(nn.Module):
    """One layer over candidates: self-attention within each candidate's regions, cross-attention from them
    to the request (projected once per request, not once per candidate: a candidate's queries attend to the
    request alone, so all of a request's candidates share one call), then a feed-forward; pre-norm."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_ff = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, k, t, w = x.shape
        y = self.norm_self(x).reshape(b * k, t, w)
        x = x + self.self_attention(y, y, y, need_weights=False)[0].reshape(b, k, t, w)
        y = self.norm_cross(x).reshape(b, k * t, w)
        x = x + self.cross_attention(y, memory, memory, key_padding_mask=pad, need_weights=False)[0].reshape(b, k, t, w)
        return x + self.ff(self.norm_ff(x))


class Judge(nn.Module):
    """Scores candidates for a request: higher is a better answer (see the module doc).

    With an object vocabulary (`config.objects`), every region is also read as a distribution over objects
    (a head trained from scene graphs), and each candidate is told what changed against the reference: per
    cell (its objects minus the reference's in that cell) and in all (the difference of the object counts),
    which is what "make the star red" or "remove the circle" is checked against. The request says which
    objects it wants in each cell (read from the words and the reference, taught from the edited scene), and
    each candidate is compared with that too: its objects against those wanted, cell by cell and in counts."""

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__()
        c = self.config = config
        w = c.width
        self.text_in = nn.Linear(c.dim, w)
        self.region_in = nn.Linear(c.dim, w)
        self.text_position = nn.Parameter(torch.randn(c.context, w) * 0.02)
        self.cell_position = nn.Parameter(torch.randn(c.cells, w) * 0.02)
        self.reference_type = nn.Parameter(torch.randn(w) * 0.02)
        self.candidate_type = nn.Parameter(torch.randn(w) * 0.02)
        self.summary = nn.Parameter(torch.randn(w) * 0.02)
        self.objects = nn.Linear(w, c.objects) if c.objects else None
        self.wanted = nn.Linear(w, c.objects) if c.objects else None
        self.change_in = nn.Linear(2 * c.objects, w) if c.objects else None
        self.counts_in = (
            nn.Sequential(nn.Linear(4 * c.objects + 2, w), nn.GELU(), nn.Linear(w, w)) if c.objects else None
        )
        self.request = nn.ModuleList(
            nn.TransformerEncoderLayer(w, c.heads, 2 * w, dropout=0.0, batch_first=True, norm_first=True)
            for _ in range(c.request_layers)
        )
        self.request_norm = nn.LayerNorm(w)
        self.candidate = nn.ModuleList(CandidateBlock(w, c.heads) for _ in range(c.candidate_layers))
        self.head = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, w), nn.GELU(), nn.Linear(w, 3))
        self.cosine_weight = nn.Parameter(torch.tensor(10.0))
        self.last: dict[str, torch.Tensor] = {}  # training: the latest call's side outputs
        if self.wanted is not None:  # a request starts by wanting the reference as it is
            nn.init.zeros_(self.wanted.weight)
            nn.init.zeros_(self.wanted.bias)

    def encode_request(self, words: torch.Tensor, real: torch.Tensor, reference: torch.Tensor | None) -> ReadRequest:
        """The request read once: words [b, L, dim] with `real` [b, L], the reference's regions [b, cells, dim]
        (None: a request from words alone)."""
        b, n = words.shape[:2]
        x = self.text_in(F.normalize(words, dim=-1)) + self.text_position[:n]
        pad, objects, wanted, kept = ~real, None, None, None
        if reference is not None:
            r = self.region_in(F.normalize(reference, dim=-1))
            if self.objects is not None:
                kept = self.objects(r)
                objects = kept.softmax(dim=-1)
            x = torch.cat([x, r + self.cell_position + self.reference_type], dim=1)
            pad = torch.cat([pad, torch.zeros(b, r.shape[1], dtype=torch.bool)], dim=1)
        for block in self.request:
            x = block(x, src_key_padding_mask=pad)
        x = self.request_norm(x)
        if kept is not None and self.wanted is not None:
            # each reference cell's token says what the request changes there; unchanged is the default
            logits = kept + self.wanted(x[:, n:])
            if self.training:
                self.last["wanted"] = logits
            wanted = logits.softmax(dim=-1)
        return ReadRequest(x, pad, objects, wanted)

    def score(self, request: ReadRequest, candidates: torch.Tensor, cosine: torch.Tensor) -> torch.Tensor:
        """Scores [b, k] of candidates' regions [b, k, cells, dim] for requests read by `encode_request`;
        `cosine` [b, k] is the first stage's score of each candidate."""
        b, k = candidates.shape[:2]
        x = self.region_in(F.normalize(candidates, dim=-1))
        summary = self.summary.expand(b, k, 1, -1)
        if self.objects is not None and self.change_in is not None and self.counts_in is not None:
            logits = self.objects(x)
            if self.training:
                self.last["objects"] = logits
            seen = logits.softmax(dim=-1)
            zero = torch.zeros_like(seen)
            before = request.objects[:, None] if request.objects is not None else zero
            wanted = request.wanted[:, None] if request.wanted is not None else zero
            change, asked = seen - before, (wanted - before).expand_as(seen)
            x = x + self.change_in(torch.cat([change, seen - wanted], dim=-1))
            counts, counts_asked = change.sum(dim=2), asked.sum(dim=2)
            placed = (seen * wanted).sum(dim=-1).mean(dim=-1, keepdim=True)  # in the cells asked for
            missed = (counts - counts_asked).abs().sum(dim=-1, keepdim=True)  # counts unlike those asked for
            compared = torch.cat([counts, counts_asked, counts * counts_asked, (counts - counts_asked).abs()], dim=-1)
            summary = summary + self.counts_in(torch.cat([compared, placed, missed], dim=-1))[:, :, None]
        x = torch.cat([summary, x + self.cell_position + self.candidate_type], dim=2)
        for block in self.candidate:
            x = block(x, request.memory, request.pad)
        out = self.head(x[:, :, 0])
        if self.training:
            self.last["satisfied"], self.last["good"] = out[..., 1], out[..., 2]
        return out[..., 0] + self.cosine_weight * cosine


def save_judge(judge: Judge, path: str | Path, **extra: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "judge", "config": asdict(judge.config), "state_dict": judge.state_dict(), **extra}, path)


def read_judge(path: str | Path) -> dict[str, Any]:
    """A judge checkpoint's contents (ValueError with a sentence for anything else)."""
    try:
        data = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path} is not a judge checkpoint ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "judge":
        raise ValueError(f"{path} is not a judge checkpoint")
    return data


def judge_from(data: dict[str, Any]) -> Judge:
    judge = Judge(JudgeConfig(**data["config"]))
    judge.load_state_dict(data["state_dict"])
    return judge.eval()


def load_judge(path: str | Path) -> Judge:
    return judge_from(read_judge(path))
