"""
Pretrain a small GPT under a fixed time budget. Single device, single file: this is the file
research edits. The model family of nanochat/autoresearch: rotary embeddings, QK RMS-norm,
ReLU² MLP, value embeddings with per-head gates, per-layer residual and x0 scalars, logit
soft-cap, untied head; Muon for the matrices, AdamW for embeddings and scalars.

Usage: python train.py   (the harness sets OVERNIGHT_BUDGET, OVERNIGHT_CLOCK, OVERNIGHT_SEED, OVERNIGHT_RESULT, ...)
"""

import math
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from prepare import (MAX_SEQ_LEN, SEED, TIME_BUDGET, Tokenizer, bf16_is_fast, evaluate_bpb, leave, make_dataloader,
                     report, training_budget)

# ---------------------------------------------------------------------------
# Hyperparameters (edit these directly, no CLI flags)
# ---------------------------------------------------------------------------

# Model architecture
DEPTH = 3               # number of transformer layers
ASPECT_RATIO = 64       # model_dim = DEPTH * ASPECT_RATIO, rounded up to a multiple of HEAD_DIM
HEAD_DIM = 64           # dimension of one attention head
WINDOW_PATTERN = "L"    # per-layer attention window, cycled: L = full context, S = half (last layer always L)

# Optimization
TOTAL_BATCH_SIZE = 2**11  # tokens per optimizer step (gradient accumulation fills it up)
DEVICE_BATCH_SIZE = 8     # sequences per forward/backward pass (lower it if memory runs out)
EMBEDDING_LR = 0.6        # learning rate of the token and value embeddings (AdamW)
UNEMBEDDING_LR = 0.004    # learning rate of the lm_head (AdamW)
MATRIX_LR = 0.04          # learning rate of the transformer matrices (Muon)
SCALAR_LR = 0.5           # learning rate of the per-layer residual/x0 scalars (AdamW)
WEIGHT_DECAY = 0.2        # cautious weight decay of the Muon matrices, decayed to 0 over the run
ADAM_BETAS = (0.8, 0.95)  # AdamW beta1, beta2
WARMUP_RATIO = 0.0        # fraction of the time budget spent warming the learning rate up
WARMDOWN_RATIO = 0.5      # fraction of the time budget spent cooling the learning rate down
FINAL_LR_FRAC = 0.0       # learning rate at the end, as a fraction of the peak

# Machinery
COMPILE = False           # torch.compile the model: the gpu preset's; on a 2-core CPU it bought 1.04x per token
                          # for ~6 s of every run, ~30 s of each new shape's (bench/run_phases.py)


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

@dataclass
class GPTConfig:
    sequence_len: int
    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    window_pattern: str


def norm(x):
    return F.rms_norm(x, (x.size(-1),))


def has_ve(layer_idx, n_layer):
    """Value embeddings on alternating layers, the last one always included."""
    return layer_idx % 2 == (n_layer - 1) % 2


def apply_rotary_emb(x, cos, sin):
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # stay in bf16 under autocast
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.n_embd // config.n_head
        self.c_q = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.c_k = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.c_v = nn.Linear(config.n_embd, config.n_embd, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)
        # The gate reads a few channels of the input and scales the value embedding per head.
        self.ve_gate_channels = 32
        self.ve_gate = None
        if has_ve(layer_idx, config.n_layer):
            self.ve_gate = nn.Linear(self.ve_gate_channels, self.n_head, bias=False)

    def forward(self, x, ve, cos_sin, mask):
        B, T, C = x.size()
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        if ve is not None:
            gate = 2 * torch.sigmoid(self.ve_gate(x[..., : self.ve_gate_channels]))  # (B, T, H), 1 at init
            v = v + gate.unsqueeze(-1) * ve.view(B, T, self.n_head, self.head_dim)
        cos, sin = cos_sin
        q, k = norm(apply_rotary_emb(q, cos, sin)), norm(apply_rotary_emb(k, cos, sin))  # QK norm
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        # SDPA runs on CPU, CUDA and MPS. A full causal window takes the flash kernel; a sliding
        # window needs an explicit mask, which is correct but not faster here.
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())  # ReLU²


class Block(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, ve, cos_sin, mask):
        x = x + self.attn(norm(x), ve, cos_sin, mask)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # untied from wte
        # Per-layer scalars: how much of the residual stream and of the first embedding x0 each
        # layer reads.
        self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(config.n_layer))
        self.value_embeds = nn.ModuleDict({
            str(i): nn.Embedding(config.vocab_size, config.n_embd)
            for i in range(config.n_layer) if has_ve(i, config.n_layer)
        })
        self.window_sizes = self._window_sizes(config)
        head_dim = config.n_embd // config.n_head
        freqs = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.outer(torch.arange(config.sequence_len, dtype=torch.float32), freqs)
        self.register_buffer("cos", angles.cos()[None, :, None, :], persistent=False)  # (1, T, 1, D/2)
        self.register_buffer("sin", angles.sin()[None, :, None, :], persistent=False)

    @torch.no_grad()
    def init_weights(self):
        nn.init.normal_(self.wte.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.001)
        s = 3**0.5 * self.config.n_embd**-0.5  # uniform with the std of 1/sqrt(fan_in)
        for block in self.blocks:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -s, s)
            nn.init.zeros_(block.attn.c_proj.weight)  # every block starts as the identity
            nn.init.zeros_(block.mlp.c_proj.weight)
            if block.attn.ve_gate is not None:
                nn.init.zeros_(block.attn.ve_gate.weight)
        for ve in self.value_embeds.values():
            nn.init.uniform_(ve.weight, -s, s)
        self.resid_lambdas.fill_(1.0)
        self.x0_lambdas.fill_(0.1)

    def _window_sizes(self, config):
        pattern = config.window_pattern.upper()
        assert pattern and set(pattern) <= {"S", "L"}, f"WINDOW_PATTERN must use S and L: {pattern!r}"
        sizes = {"L": config.sequence_len, "S": config.sequence_len // 2}
        windows = [sizes[pattern[i % len(pattern)]] for i in range(config.n_layer)]
        windows[-1] = config.sequence_len
        return windows

    def _mask(self, T, window, device):
        if window >= T:
            return None  # plain causal
        i = torch.arange(T, device=device)
        diff = i[:, None] - i[None, :]
        return (diff >= 0) & (diff < window)  # True = may attend

    def forward(self, idx, targets=None, reduction="mean"):
        B, T = idx.size()
        cos_sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.wte(idx))
        x0 = x
        for i, block in enumerate(self.blocks):
            x = self.resid_lambdas[i] * x + self.x0_lambdas[i] * x0
            ve = self.value_embeds[str(i)](idx) if str(i) in self.value_embeds else None
            x = block(x, ve, cos_sin, self._mask(T, self.window_sizes[i], idx.device))
        x = norm(x)
        logits = self.lm_head(x).float()
        softcap = 15
        logits = softcap * torch.tanh(logits / softcap)  # soft-cap keeps early logits tame
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)
        return loss.view(targets.shape) if reduction == "none" else loss


# ---------------------------------------------------------------------------
# Optimizer: Muon for the 2D matrices of the blocks, AdamW for everything else
# ---------------------------------------------------------------------------

class Optimizer:
    """What this script uses of torch.optim.Optimizer: parameter groups over defaults, a state
    per parameter. (torch's imports torch._dynamo at its first use: 2 s of every CPU run.)"""

    def __init__(self, params, defaults):
        groups = list(params)
        groups = groups if isinstance(groups[0], dict) else [dict(params=groups)]
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state = {}


class AdamW(Optimizer):
    """Adam with decoupled weight decay, as torch.optim.AdamW computes it."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.setdefault(p, dict(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p)))
                state["step"] += 1
                p.mul_(1 - lr * wd)
                state["m"].lerp_(p.grad, 1 - beta1)
                state["v"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = (state["v"] / (1 - beta2 ** state["step"])).sqrt_().add_(eps)
                p.addcdiv_(state["m"], denom, value=-lr / (1 - beta1 ** state["step"]))


# Polar Express coefficients (Amsel et al. 2025, as in nanochat): quintic iterations that push
# every singular value of X towards 1.
POLAR_EXPRESS = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
]


def orthogonalize(g, steps=5, dtype=torch.bfloat16):
    """The nearest semi-orthogonal matrix to g (approximately U V^T of its SVD), computed in
    `dtype` (bf16 where that is the faster: the iteration tolerates its rounding)."""
    X = g.to(dtype)
    transpose = X.size(-2) > X.size(-1)
    if transpose:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) * 1.02 + 1e-6)
    for a, b, c in POLAR_EXPRESS[:steps]:
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    return (X.mT if transpose else X).to(g.dtype)


class Muon(Optimizer):
    """Momentum, then orthogonalise the update: every direction of a matrix moves at the same
    rate, so the learning rate means the same thing for every shape."""

    def __init__(self, params, lr, momentum=0.95, weight_decay=0.0, ns_steps=5, ns_dtype=torch.bfloat16):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            lr, wd, mom = group["lr"], group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state.setdefault(p, {}).setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - mom)
                update = orthogonalize(p.grad.lerp(buf, mom), group["ns_steps"], self.ns_dtype)  # Nesterov
                update *= max(1.0, p.size(-2) / p.size(-1)) ** 0.5  # tall matrices: same RMS change
                # Cautious weight decay: shrink only the weights the update already pushes to zero.
                p.sub_(lr * wd * p * ((update * p) >= 0))
                p.sub_(lr * update)


def make_optimizers(model, ns_dtype):
    # AdamW rates were tuned at width 768; wider models take proportionally smaller steps.
    dmodel_lr_scale = (model.config.n_embd / 768) ** -0.5
    adam_groups = [
        dict(params=list(model.lm_head.parameters()), lr=UNEMBEDDING_LR * dmodel_lr_scale),
        dict(params=list(model.wte.parameters()), lr=EMBEDDING_LR * dmodel_lr_scale),
        dict(params=list(model.value_embeds.parameters()), lr=EMBEDDING_LR * dmodel_lr_scale),
        dict(params=[model.resid_lambdas], lr=SCALAR_LR * 0.01),
        dict(params=[model.x0_lambdas], lr=SCALAR_LR, betas=(0.96, 0.95)),
    ]
    adamw = AdamW(adam_groups, betas=ADAM_BETAS, eps=1e-10, weight_decay=0.0)
    muon = Muon([p for p in model.blocks.parameters() if p.ndim == 2], lr=MATRIX_LR, weight_decay=WEIGHT_DECAY,
                ns_dtype=ns_dtype)
    for opt in (adamw, muon):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return adamw, muon


def get_lr_multiplier(progress):
    if progress < WARMUP_RATIO:
        return progress / WARMUP_RATIO
    if progress < 1.0 - WARMDOWN_RATIO:
        return 1.0
    cooldown = (1.0 - progress) / WARMDOWN_RATIO
    return cooldown + (1 - cooldown) * FINAL_LR_FRAC


def get_muon_momentum(step):
    frac = min(step / 300, 1)  # 0.85 -> 0.95 over the first 300 steps
    return (1 - frac) * 0.85 + frac * 0.95


# ---------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------

t_start = time.time()
torch.manual_seed(SEED)  # OVERNIGHT_SEED: init and data order, so seeds measure the noise
if torch.cuda.is_available():
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
elif torch.backends.mps.is_available():
    device = torch.device("mps")
else:
    device = torch.device("cpu")
# bf16 autocast (and bf16 in Muon) only where it is faster: CUDA, and a CPU with hardware bf16
# when a timed matmul says so; never where bf16 is emulated (AVX2-only CPUs: ~12x slower).
# prepare.py decides; the re-score evaluates with the precision this run evaluated with.
use_bf16, precision_why = bf16_is_fast(device)
autocast_ctx = torch.amp.autocast(device_type=device.type, dtype=torch.bfloat16) if use_bf16 else nullcontext()

tokenizer = Tokenizer()
vocab_size = tokenizer.get_vocab_size()
model_dim = math.ceil(DEPTH * ASPECT_RATIO / HEAD_DIM) * HEAD_DIM
config = GPTConfig(sequence_len=MAX_SEQ_LEN, vocab_size=vocab_size, n_layer=DEPTH,
                   n_head=model_dim // HEAD_DIM, n_embd=model_dim, window_pattern=WINDOW_PATTERN)
model = GPT(config).to(device)
model.init_weights()
num_params = sum(p.numel() for p in model.parameters())
# FLOPs per token for MFU: 6 per matrix weight (embedding lookups are free) + attention.
matrix_params = sum(p.numel() for p in model.blocks.parameters()) + model.lm_head.weight.numel()
flops_per_token = 6 * matrix_params + 12 * DEPTH * model_dim * MAX_SEQ_LEN
print(f"device: {device} | params: {num_params / 1e6:.2f}M | dim {model_dim} x {DEPTH} layers | vocab {vocab_size}")
print(f"precision: {'bf16' if use_bf16 else 'fp32'} ({precision_why})")

adamw, muon = make_optimizers(model, torch.bfloat16 if use_bf16 else torch.float32)
# Compile where it pays: CUDA, and CPU when a C++ compiler is there for inductor.
if COMPILE and (device.type == "cuda" or (device.type == "cpu" and shutil.which(os.environ.get("CXX", "g++")))):
    train_model = torch.compile(model)
else:
    train_model = model

# Gradient accumulation fills TOTAL_BATCH_SIZE with whole sequences, in equal micro-batches of
# at most DEVICE_BATCH_SIZE sequences: every pair of values is valid (a search may draw any).
rows_per_step = max(1, round(TOTAL_BATCH_SIZE / MAX_SEQ_LEN))
largest = max(1, min(DEVICE_BATCH_SIZE, rows_per_step))
device_batch_size = max(d for d in range(1, largest + 1) if rows_per_step % d == 0)
grad_accum_steps = rows_per_step // device_batch_size
tokens_per_step = rows_per_step * MAX_SEQ_LEN
train_loader = make_dataloader(device_batch_size, MAX_SEQ_LEN, "train", seed=SEED, device=device)
print(f"time budget: {TIME_BUDGET:.0f}s | seed {SEED} | {tokens_per_step} tokens/step, "
      f"{grad_accum_steps} micro-batches of {device_batch_size}")

# Peak bf16 FLOP/s of the GPU, for MFU (0 where unknown, e.g. on CPU).
PEAK_FLOPS = {"H100": 989.5e12, "H200": 989.5e12, "B200": 2250e12, "A100": 312e12, "L40S": 362e12, "4090": 165e12}
gpu_name = torch.cuda.get_device_name() if device.type == "cuda" else ""
peak_flops = next((v for k, v in PEAK_FLOPS.items() if k in gpu_name), 0.0)

# ---------------------------------------------------------------------------
# Training loop: prepare.py keeps the budget (it counts the batches and times the steps)
# ---------------------------------------------------------------------------

budget = training_budget(model)  # the step count or time the budget allows, by the clock overnight.toml names
t_train = time.time()
step, smooth_loss, last_log = 0, 0.0, 0.0
while budget.next_step():
    t0 = time.time()
    for _ in range(grad_accum_steps):
        x, y = next(train_loader)
        with autocast_ctx:
            loss = train_model(x, y)
        (loss / grad_accum_steps).backward()
    progress = budget.progress()
    lrm = get_lr_multiplier(progress)
    for opt in (adamw, muon):
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lrm
    muon.param_groups[0]["momentum"] = get_muon_momentum(step)
    muon.param_groups[0]["weight_decay"] = WEIGHT_DECAY * (1 - progress)
    adamw.step()
    muon.step()
    model.zero_grad(set_to_none=True)

    loss_f = loss.item()  # also waits for the device
    if not math.isfinite(loss_f) or loss_f > 100:
        raise SystemExit(f"FAIL: training diverged at step {step} (loss {loss_f}) — lower the learning rates")
    dt = time.time() - t0
    smooth_loss = 0.9 * smooth_loss + 0.1 * loss_f
    if time.time() - last_log > 5 or step == 0:
        last_log = time.time()
        debiased = smooth_loss / (1 - 0.9 ** (step + 1))
        print(f"step {step:05d} ({100 * progress:.1f}%) | loss {debiased:.4f} | lrm {lrm:.2f} | "
              f"dt {1000 * dt:.0f}ms | tok/s {tokens_per_step / dt:,.0f}", flush=True)
    step += 1

# ---------------------------------------------------------------------------
# Evaluation and summary (measured and written by prepare.py)
# ---------------------------------------------------------------------------

model.eval()
t_eval = time.time()
with autocast_ctx:
    evaluate_bpb(model, device_batch_size, device=device)
print(f"evaluated in {time.time() - t_eval:.1f}s; started training after {t_train - t_start:.1f}s")
tokens_per_second = budget.tokens_per_second()
report(  # training_seconds, num_steps and total_tokens_M come from the budget, not from here
    device=device,
    tokens_per_second=tokens_per_second,
    mfu_percent=100 * flops_per_token * tokens_per_second / peak_flops if peak_flops else 0.0,
    num_params_M=num_params / 1e6,
    depth=DEPTH,
    precision="bf16" if use_bf16 else "fp32",
)
leave()  # everything is written: end without the interpreter's teardown (1-1.7 s with torch, on a small CPU)
