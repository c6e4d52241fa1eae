"""The Hugging Face transformers engine (default; CPU and GPU).

Scoring with prefix reuse ("tree" scoring): prompts are left-padded and encoded once per
batch; then each prompt's candidates are packed into one row that continues the prompt's KV
cache, with a 4D attention mask that lets every candidate token see the prompt and its own
candidate's earlier tokens only. Positions follow the attention mask, so padding never shifts
them, and the result equals re-encoding prompt+candidate in full (tested to 1e-4 in fp32).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mpr.errors import MprError
from mpr.lm.engine import (
    ContinuationScore,
    EngineConfig,
    EngineStats,
    Generation,
    SamplingConfig,
    TokenizerMixin,
    auto_dtype,
    regroup,
    resolve_device,
    truncate_at_stop,
)
from mpr.lm.transcript_cache import TranscriptCache
from mpr.lm.weights import quiet_transformers, resolve_model

log = logging.getLogger(__name__)

SCORE_TOKENS = 2048
"""Packed candidate tokens (rows x padded width) per scoring forward pass."""


def resolve_dtype(name: str, device: str) -> Any:
    import torch

    name = auto_dtype(name, device)
    if name == "bf16":
        return torch.bfloat16 if device == "cpu" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


SEGMENT_MEMO = 200_000
"""Transcript segments whose token ids an engine keeps (then the memo starts over)."""


class HFEngine(TokenizerMixin):
    """Engine over a transformers causal LM (generate, score) and/or value model (value).

    The causal LM and the value model load lazily on first use of a verb that needs
    them; a value-model directory (``*ForSequenceClassification``) only serves ``value``.
    ``lm``: a causal LM already in memory (e.g. the weights being trained) to serve instead of
    loading one from ``config.model``, which then supplies the tokenizer only.
    """

    def __init__(self, config: EngineConfig | None = None, lm: Any = None):
        import torch

        config = config or EngineConfig()
        self.config = config
        self.stats = EngineStats()
        self.path = resolve_model(config.model)
        quiet_transformers()
        torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.tokenizer = self._load_tokenizer()
        self._lm: Any = lm
        self._segments: dict[str, list[int]] = {}  # transcript segment -> its token ids
        self.transcripts = TranscriptCache(config.transcript_cache_tokens) if config.transcript_cache_tokens else None
        self._value_model: Any = None

    # -- loading -----------------------------------------------------------------------
    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.path)
        except Exception as exc:
            raise MprError(f"cannot load tokenizer of model {self.config.model!r} ({self.path}): "
                           f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}") from None
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        return tok

    @property
    def lm(self) -> Any:
        if self._lm is None:
            from transformers import AutoModelForCausalLM

            self._lm = self._load(AutoModelForCausalLM, self.dtype)
        return self._lm

    @property
    def value_model(self) -> Any:
        if self._value_model is None:
            import torch
            from transformers import AutoModelForSequenceClassification

            model = self._load(AutoModelForSequenceClassification, torch.float32)  # value heads stay fp32
            if model.config.num_labels != 1:
                raise MprError(f"{self.path} is not a value model (num_labels={model.config.num_labels}, expected 1)")
            if model.config.pad_token_id is None:  # batches > 1 need it to find each row's last token
                model.config.pad_token_id = self.tokenizer.pad_token_id
            self._value_model = model
        return self._value_model

    def _load(self, auto_cls: Any, dtype: Any) -> Any:
        try:
            model = auto_cls.from_pretrained(self.path, dtype=dtype)
        except Exception as exc:
            raise MprError(f"cannot load model {self.config.model!r} ({self.path}) as {auto_cls.__name__}: "
                           f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}") from None
        return model.to(self.device).eval()

    # -- helpers ---------------------------------------------------------------------------
    def _chunks(self, n: int) -> list[range]:
        b = self.config.batch_size
        return [range(i, min(n, i + b)) for i in range(0, n, b)]

    # -- generate ----------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], n: int, sampling: SamplingConfig) -> list[list[Generation]]:
        """``n`` samples per prompt; outputs cut at the first stop string. Seeded per call."""
        return self._generate_ids([self.encode(p) for p in prompts], n, sampling)

    def generate_segments(self, prompts: Sequence[Sequence[str]], n: int,
                          sampling: SamplingConfig) -> list[list[Generation]]:
        """``generate`` with each prompt given as its segments, each tokenized on its own (ids joined):
        the ids a transcript model was trained on."""
        return self._generate_ids([[t for seg in p for t in self._segment_ids(seg)] for p in prompts], n, sampling)

    def _generate_ids(self, prompts: list[list[int]], n: int, sampling: SamplingConfig) -> list[list[Generation]]:
        import torch

        if not prompts:
            return []
        self.stats.calls += 1
        torch.manual_seed(sampling.seed)
        out: list[list[Generation]] = []
        pad = self.tokenizer.pad_token_id
        per_chunk = max(1, self.config.batch_size // max(1, n))
        for start in range(0, len(prompts), per_chunk):
            batch = prompts[start : start + per_chunk]
            ids, mask = _left_pad(batch, pad, self.device)
            self.stats.prompt_tokens += sum(map(len, batch))
            kwargs: dict[str, Any] = dict(max_new_tokens=sampling.max_new_tokens, num_return_sequences=n,
                                          pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id)
            if sampling.temperature > 0:
                kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
            else:
                kwargs.update(do_sample=False)
            if sampling.stop:
                kwargs.update(stop_strings=list(sampling.stop), tokenizer=self.tokenizer)
            with torch.inference_mode():
                seqs = self.lm.generate(input_ids=ids, attention_mask=mask, **kwargs)
            new = seqs[:, ids.shape[1]:]
            for i in range(len(batch)):
                row = []
                for k in range(n):
                    toks = [t for t in new[i * n + k].tolist() if t != pad]
                    if self.tokenizer.eos_token_id in toks:
                        toks = toks[: toks.index(self.tokenizer.eos_token_id)]
                    self.stats.generated_tokens += len(toks)
                    text = truncate_at_stop(self.tokenizer.decode(toks, skip_special_tokens=True), sampling.stop)
                    row.append(Generation(text, len(toks)))
                out.append(row)
        return out

    # -- score -------------------------------------------------------------------------------
    def score(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[ContinuationScore]]:
        """Log-prob of each candidate given its prompt; each prompt is encoded once (see module doc)."""
        if not self._start_score(prompts, candidates):
            return []
        return self._score_ids([self.encode(p) for p in prompts], [[self.encode(c) for c in cs] for cs in candidates])

    def score_segments(self, prompts: Sequence[Sequence[str]],
                       candidates: Sequence[Sequence[str]]) -> list[list[ContinuationScore]]:
        """``score`` with each prompt given as its segments, each tokenized on its own (ids joined):
        the ids a transcript was trained on. Segments seen before are not tokenized again."""
        if not self._start_score(prompts, candidates):
            return []
        segments = [[self._segment_ids(seg) for seg in p] for p in prompts]
        cand_ids = [[self.encode(c) for c in cs] for cs in candidates]
        if self.transcripts is None:
            return self._score_ids([[t for seg in p for t in seg] for p in segments], cand_ids)
        return [self._score_continuing(p, cs) for p, cs in zip(segments, cand_ids)]

    def _score_continuing(self, segments: list[list[int]], cands: list[list[int]]) -> list[ContinuationScore]:
        """One prompt's candidates, running only the prompt tokens after its longest cached prefix
        (``mpr.lm.transcript_cache``); the prompt's cache is kept for the prompts that extend it."""
        import itertools

        import torch

        ids = [t for seg in segments for t in seg]
        if not ids:
            raise ValueError("score: empty prompt")
        entry = self.transcripts.longest(ids, list(itertools.accumulate(map(len, segments))))
        cache, done = (entry.cache, entry.length) if entry is not None else (None, 0)
        with torch.inference_mode():
            if done < len(ids):
                out = self.lm(input_ids=torch.tensor([ids[done:]], device=self.device), past_key_values=cache,
                              position_ids=torch.arange(done, len(ids), device=self.device)[None], use_cache=True,
                              logits_to_keep=1)
                cache, first = out.past_key_values, torch.log_softmax(out.logits[0, -1].float(), dim=-1)
                self.transcripts.store(ids, cache, first)
                self.stats.prompt_tokens += len(ids) - done
            else:
                first = entry.next_logprobs
            return self._continue_candidates(cache, len(ids), first, cands)

    def _continue_candidates(self, cache: Any, length: int, first: Any,
                             cands: list[list[int]]) -> list[ContinuationScore]:
        """The candidates packed in one row continuing ``cache`` (``length`` tokens) under the tree mask
        of ``_packed``; ``first``: the log-probs of the token after the prompt."""
        import torch

        packed = [t for c in cands for t in c]
        if not packed:
            return [ContinuationScore(0.0, 0) for _ in cands]
        dev = self.device
        own = torch.tensor([j for j, c in enumerate(cands) for _ in c], device=dev)
        off = torch.tensor([k for c in cands for k in range(len(c))], device=dev)
        ids = torch.tensor(packed, device=dev)
        same = (own[:, None] == own[None, :]) & (off[None, :] <= off[:, None])
        allowed = torch.cat([torch.ones((len(packed), length), dtype=torch.bool, device=dev), same], dim=1)
        attn = torch.zeros((1, 1, len(packed), length + len(packed)), dtype=self.lm.dtype, device=dev)
        attn.masked_fill_(~allowed[None, None], torch.finfo(self.lm.dtype).min)
        out = self.lm(input_ids=ids[None], attention_mask=attn, position_ids=(length + off)[None],
                      past_key_values=cache, use_cache=True)
        self.stats.prompt_tokens += len(packed)
        logp = torch.log_softmax(out.logits[0].float(), dim=-1)  # [C, V]
        tok = first[ids].clone()
        later = off > 0  # token q (offset > 0) is predicted at q-1, the previous token of its own candidate
        tok[later] = logp[:-1][later[1:]].gather(1, ids[later][:, None]).squeeze(1)
        values, scores, q = tok.tolist(), [], 0
        for c in cands:
            scores.append(ContinuationScore(float(sum(values[q : q + len(c)])), len(c)))
            q += len(c)
        return scores

    def count_segment_tokens(self, segment: str) -> int:
        return len(self._segment_ids(segment))

    def _segment_ids(self, segment: str) -> list[int]:
        if len(self._segments) > SEGMENT_MEMO:  # a long run must not grow without bound
            self._segments.clear()
        ids = self._segments.get(segment)
        if ids is None:
            ids = self._segments[segment] = self.encode(segment)
        return ids

    def _score_ids(self, prompt_ids: list[list[int]], cand_ids: list[list[list[int]]]) -> list[list[ContinuationScore]]:
        results: list[list[ContinuationScore]] = [[] for _ in prompt_ids]
        for chunk in self._prompt_chunks(cand_ids):
            scores = self._score_chunk([prompt_ids[i] for i in chunk], [cand_ids[i] for i in chunk])
            for i, s in zip(chunk, scores):
                results[i] = s
        return results

    def _prompt_chunks(self, cand_ids: list[list[list[int]]]) -> list[list[int]]:
        """Group prompts: at most batch_size prompts and ~SCORE_TOKENS packed candidate tokens
        (padded) per group, which bounds the [rows, tokens, vocab] logits tensor."""
        chunks: list[list[int]] = []
        cur: list[int] = []
        width = 0
        for i, cs in enumerate(cand_ids):
            packed = max(1, sum(map(len, cs)))
            if cur and (len(cur) >= self.config.batch_size or (len(cur) + 1) * max(width, packed) > SCORE_TOKENS):
                chunks.append(cur)
                cur, width = [], 0
            cur.append(i)
            width = max(width, packed)
        if cur:
            chunks.append(cur)
        return chunks

    def _score_chunk(self, prompts: list[list[int]], cands: list[list[list[int]]]) -> list[list[ContinuationScore]]:
        """Tree scoring: run the prompts once, then all of a prompt's candidates packed in one row.

        In the packed row each candidate token attends to its prompt and to the earlier tokens of
        its own candidate only (a 4D mask), at positions continuing the prompt — the same
        computation as encoding prompt+candidate alone, without copying the prompt's KV cache.
        """
        import torch

        ids, mask, c_ids, c_mask, attn, off = self._packed(prompts, cands, self.lm.dtype)
        P, C, dev = c_ids.shape[0], c_ids.shape[1], self.device
        with torch.inference_mode():
            # logits of the prompt's last position only: [P, L, V] over a 49k vocabulary is most of the work
            out = self.lm(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                          use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # [P, V]
            c_out = self.lm(input_ids=c_ids, attention_mask=attn, position_ids=mask.sum(-1, keepdim=True) + off,
                            past_key_values=out.past_key_values, use_cache=True)
            logits = c_out.logits.float()  # [P, C, V]
            tok = torch.empty((P, C), dtype=torch.float32, device=dev)
            tok[:, 0] = 0.0
            if C > 1:  # token q (offset > 0) is predicted at q-1, the previous token of its own candidate
                prev = logits[:, :-1]
                tok[:, 1:] = prev.gather(2, c_ids[:, 1:, None]).squeeze(2) - torch.logsumexp(prev, dim=-1)
            starts = off == 0
            tok = torch.where(starts, first.gather(1, c_ids), tok) * c_mask
        results: list[list[ContinuationScore]] = []
        tok_list = tok.tolist()
        for i, cs in enumerate(cands):
            row, q = [], 0
            for c in cs:
                row.append(ContinuationScore(float(sum(tok_list[i][q : q + len(c)])), len(c)))
                q += len(c)
            results.append(row)
        return results

    def _packed(self, prompts: list[list[int]], cands: list[list[list[int]]], dtype: Any) -> tuple[Any, ...]:
        """Inputs of a tree forward: left-padded prompts (ids, mask); every prompt's candidates packed
        in one right-padded row (c_ids, c_mask); the additive 4D mask letting each candidate token see
        its prompt and its own candidate's earlier tokens only; each token's offset in its candidate."""
        import torch

        if any(not p for p in prompts):
            raise ValueError("score: empty prompt")
        pad, dev = self.tokenizer.pad_token_id, self.device
        ids, mask = _left_pad(prompts, pad, dev)
        self.stats.prompt_tokens += sum(map(len, prompts)) + sum(len(c) for cs in cands for c in cs)
        packed = [[t for c in cs for t in c] for cs in cands]
        owner = [[j for j, c in enumerate(cs) for _ in c] for cs in cands]
        offset = [[k for c in cs for k in range(len(c))] for cs in cands]
        c_ids, c_mask = _right_pad(packed, pad, dev)
        P, C, L = len(prompts), c_ids.shape[1], ids.shape[1]
        own = torch.full((P, C), -1, dtype=torch.long)
        off = torch.zeros((P, C), dtype=torch.long)
        for i in range(P):
            own[i, : len(owner[i])] = torch.tensor(owner[i], dtype=torch.long)
            off[i, : len(offset[i])] = torch.tensor(offset[i], dtype=torch.long)
        own, off = own.to(dev), off.to(dev)
        same = (own[:, :, None] == own[:, None, :]) & (off[:, None, :] <= off[:, :, None]) & (own[:, :, None] >= 0)
        same |= torch.eye(C, dtype=torch.bool, device=dev)[None]  # padding rows attend to themselves
        allowed = torch.cat([mask.bool()[:, None, :].expand(P, C, L), same], dim=2)
        attn = torch.zeros((P, 1, C, L + C), dtype=dtype, device=dev)
        attn.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
        return ids, mask, c_ids, c_mask, attn, off

    # -- value over shared prefixes ----------------------------------------------------------------
    def value_groups(self, prefixes: Sequence[str], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """``[i][j]`` = ``value(prefixes[i] + continuations[i][j])``, with each prefix encoded once and
        its continuations packed in one row (tree attention, as in ``score``). A pair whose joint
        tokenization does not split at the boundary is computed in full, so results always equal
        ``value`` on the joined texts (tested to 1e-4)."""
        if len(prefixes) != len(continuations):
            raise ValueError("value_groups: prefixes and continuations differ in length")
        if not prefixes:
            return []
        self.stats.calls += 1
        out: list[list[float]] = [[0.0] * len(cs) for cs in continuations]
        groups: list[tuple[int, list[int], list[list[int]], list[int]]] = []  # (i, prefix ids, cont ids, js)
        full: list[tuple[int, int]] = []
        for i, (p, cs) in enumerate(zip(prefixes, continuations)):
            p_ids = self.encode(p)
            ok_ids, js = [], []
            for j, c in enumerate(cs):
                c_ids = self.encode(c)
                if p_ids and c_ids and self.encode(p + c) == p_ids + c_ids:
                    ok_ids.append(c_ids)
                    js.append(j)
                else:
                    full.append((i, j))
            if js:
                groups.append((i, p_ids, ok_ids, js))
        for chunk in self._prompt_chunks([g[2] for g in groups]):
            part = [groups[k] for k in chunk]
            for (i, _, _, js), vals in zip(part, self._value_chunk([g[1] for g in part], [g[2] for g in part])):
                for j, v in zip(js, vals):
                    out[i][j] = v
        if full:
            self.stats.calls -= 1  # the fallback's own call is part of this one
            for (i, j), v in zip(full, self.value([prefixes[i] + continuations[i][j] for i, j in full])):
                out[i][j] = v
        return out

    def value_segments(self, prompts: Sequence[Sequence[str]],
                       candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        """``[i][k]``: the value head at the last token of ``candidates[i][k]`` after ``prompts[i]``
        (segments tokenized one by one, ids joined; each prompt encoded once, its candidates packed
        in one row under tree attention)."""
        if len(prompts) != len(candidates):
            raise ValueError("value_segments: prompts and candidates differ in length")
        if not prompts:
            return []
        self.stats.calls += 1
        prompt_ids = [[t for seg in p for t in self._segment_ids(seg)] for p in prompts]
        cand_ids = [[self.encode(c) for c in cs] for cs in candidates]
        if any(not p for p in prompt_ids) or any(not c for cs in cand_ids for c in cs):
            raise ValueError("value_segments: empty prompt or candidate")
        out: list[list[float]] = [[] for _ in prompts]
        for chunk in self._prompt_chunks(cand_ids):
            for i, vals in zip(chunk, self._value_chunk([prompt_ids[i] for i in chunk], [cand_ids[i] for i in chunk])):
                out[i] = vals
        return out

    def _value_chunk(self, prompts: list[list[int]], cands: list[list[list[int]]]) -> list[list[float]]:
        """Tree forward of the value model's body; the scalar head reads each candidate's last token."""
        import torch

        model = self.value_model
        ids, mask, c_ids, c_mask, attn, off = self._packed(prompts, cands, torch.float32)
        body = model.base_model
        with torch.inference_mode():
            out = body(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                       use_cache=True)
            c_out = body(input_ids=c_ids, attention_mask=attn, position_ids=mask.sum(-1, keepdim=True) + off,
                         past_key_values=out.past_key_values, use_cache=True)
            values = model.score(c_out.last_hidden_state.float())[..., 0].tolist()  # [P, C]
        results = []
        for i, cs in enumerate(cands):
            ends, q = [], 0
            for c in cs:
                q += len(c)
                ends.append(float(values[i][q - 1]))
            results.append(ends)
        return results

    def score_naive(self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> list[list[ContinuationScore]]:
        """Reference scoring: re-encode prompt+candidate in full for every pair (benchmarks, tests)."""
        import torch

        if not self._start_score(prompts, candidates):
            return []
        pairs = [(self.encode(p), self.encode(c)) for p, cs in zip(prompts, candidates) for c in cs]
        flat: list[ContinuationScore] = []
        pad = self.tokenizer.pad_token_id
        for chunk in self._chunks(len(pairs)):
            seqs = [pairs[k][0] + pairs[k][1] for k in chunk]
            self.stats.prompt_tokens += sum(map(len, seqs))
            ids, mask = _right_pad(seqs, pad, self.device)
            with torch.inference_mode():
                logp = torch.log_softmax(self.lm(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for row, k in enumerate(chunk):
                p_len, c = len(pairs[k][0]), pairs[k][1]
                if not c:
                    flat.append(ContinuationScore(0.0, 0))
                    continue
                idx = torch.arange(p_len - 1, p_len - 1 + len(c), device=self.device)
                target = torch.tensor(c, device=self.device)
                flat.append(ContinuationScore(float(logp[row, idx].gather(1, target[:, None]).sum()), len(c)))
        return regroup(flat, candidates)

    # -- value -------------------------------------------------------------------------------
    def value(self, texts: Sequence[str]) -> list[float]:
        """Scalar head outputs, fp32, right-padded batches."""
        import torch

        if not texts:
            return []
        self.stats.calls += 1
        out: list[float] = []
        pad = self.tokenizer.pad_token_id
        for chunk in self._chunks(len(texts)):
            seqs = [self.encode(texts[k]) or [pad] for k in chunk]
            self.stats.prompt_tokens += sum(map(len, seqs))
            ids, mask = _right_pad(seqs, pad, self.device)
            with torch.inference_mode():
                logits = self.value_model(input_ids=ids, attention_mask=mask).logits
            out.extend(float(v) for v in logits[:, 0].float().tolist())
        return out


def _left_pad(seqs: list[list[int]], pad: int, device: str) -> tuple[Any, Any]:
    import torch

    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def _right_pad(seqs: list[list[int]], pad: int, device: str) -> tuple[Any, Any]:
    import torch

    width = max(1, max(map(len, seqs)))
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)
