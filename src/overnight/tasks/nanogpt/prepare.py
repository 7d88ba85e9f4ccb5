"""
The fixed half of the nanogpt task: constants, data, tokenizer, dataloader and evaluation.
Protected: proposers never edit this file, so every experiment is measured the same way.

Usage: python prepare.py   (builds the cache ahead of time; train.py builds it on demand)

Data is tokenized once into a cache folder outside the git tree ($OVERNIGHT_CACHE, else
~/.cache/overnight), one subfolder per data spec and vocabulary, and memory-mapped by every
run, so an experiment starts in seconds. The run's figures go to stdout (`---` then
`key: value` lines) and, when the harness sets OVERNIGHT_RESULT, to that JSON file.
"""

import base64
import bisect
import hashlib
import json
import math
import os
import re
import shutil
import sys
import sysconfig
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------
# Fixed constants (written by `overnight init --preset/--data`; do not edit)
# ---------------------------------------------------------------------------
DATA = "embedded"      # data spec: embedded | text:PATH | parquet:DIR | hf:OWNER/NAME[/FOLDER]
MAX_SEQ_LEN = 256      # context length in tokens
VOCAB_SIZE = 2048      # BPE vocabulary size, special tokens included
EVAL_TOKENS = 2**16    # validation tokens scored by evaluate_bpb (fewer if the split is smaller)
VAL_PERMILLE = 30      # documents (by a hash of their name) held out for validation, per 1000
HELDOUT_PERMILLE = 30  # documents in neither split, per 1000: the harness's own held-out slice
TOKENIZER_CHARS = 2**27  # characters of training text the BPE tokenizer learns from (at most)
HF_SHARDS = 4          # parquet shards an hf: spec downloads
EXCLUDED_STEPS = 2     # first training steps (compilation, warm-up): not timed; charged at the timed steps' rate
COST_STEPS = 24        # the tokens clock: timed steps over which the setup calibrates it, once per machine
COST_TOLERANCE = 0.15  # the steps clock: a commit measured within this fraction of its parent's cost pays the parent's

try:  # total_seconds counts from process start: imports, start-up, training, evaluation
    import psutil

    _T0 = psutil.Process().create_time()
except ImportError:
    _T0 = time.time()
_MARKS = {"imported": time.time()}  # when each phase of the run began (phases(): where a run's time goes)


def _default_budget():
    """Training seconds for a run by hand: the `budget` in overnight.toml, defined there once."""
    toml = Path(__file__).with_name("overnight.toml")
    found = re.search(r"^\s*budget\s*=\s*([0-9.]+)", toml.read_text(), re.M) if toml.exists() else None
    return float(found.group(1)) if found else 60.0


# The harness sets these per run; without them `python train.py` runs with the defaults.
TIME_BUDGET = float(os.environ.get("OVERNIGHT_BUDGET") or _default_budget())
SEED = int(os.environ.get("OVERNIGHT_SEED") or 42)
CLOCK = os.environ.get("OVERNIGHT_CLOCK") or "wall"  # overnight.toml [task] clock: wall | cpu | tokens | steps
CLOCKS = ("wall", "cpu", "tokens", "steps")


def _env_seconds(name):
    """A positive float from the harness's environment (seconds per token), or None."""
    try:
        value = float(os.environ.get(name) or "nan")
    except ValueError:
        _fail(f"{name} is {os.environ[name]!r} — the harness sets it to seconds per token")
    return value if math.isfinite(value) and value > 0 else None


def training_tokens(model=None):
    """The budget in tokens under the tokens clock, None under the others: the compute the
    night's baseline model did in TIME_BUDGET seconds on this machine (measured once by the
    task's setup, kept in the cache folder), in tokens of `model`: a model with twice the
    matrix weights gets half the tokens. So every run of every night here gets the same compute
    whatever the machine's load, and a seed trains the same steps twice. What it gives up: a
    candidate that only trains faster (a kernel, compile) gets no more tokens, and one slower per
    FLOP pays only in wall time (bounded by the harness's timeout); the attention's own FLOPs
    are not counted (about a seventh of the cpu preset's)."""
    if CLOCK != "tokens":
        return None
    calibration = _calibration()
    if calibration is None:
        _fail(f"the tokens clock has no calibration for this machine in {_calibration_path()} — run "
              "`python prepare.py --setup` once (overnight runs it before a night)")
    scale = calibration["flops_per_token"] / matmul_flops_per_token(model) if model is not None else 1.0
    return TIME_BUDGET * calibration["tokens_per_second"] * scale


def matmul_flops_per_token(model):
    """6 per weight of the model's matrices (a multiply-add forward, two backward); embedding
    tables are looked up, not multiplied, and are left out."""
    import torch.nn as nn

    looked_up = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return 6 * sum(p.numel() for p in model.parameters() if p.dim() >= 2 and id(p) not in looked_up)


def _calibration_path():
    """One calibration per device model (the CPU's or GPU's name) and model shape of the preset
    (sequence length, vocabulary). Not per thread count or core set: every slot of a night,
    pinned or not, must train on the same number of tokens. One machine's: a Ray node with
    another device finds none and says so."""
    import platform

    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else _cpu_model() or platform.machine()
    key = "|".join(map(str, [device, MAX_SEQ_LEN, VOCAB_SIZE]))
    return CACHE_DIR / f"tokens-clock-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"


def _cpu_model():
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return ""
    return found.group(1).strip() if found else ""


def _calibration():
    try:
        found = json.loads(_calibration_path().read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and {"tokens_per_second", "flops_per_token"} <= found.keys() else None

CACHE_DIR = Path(os.environ.get("OVERNIGHT_CACHE") or Path.home() / ".cache" / "overnight")
# Compiled kernels are kept across runs: a warm inductor cache turns a 20 s compile into ~5 s.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CACHE_DIR / "inductor"))

BOS = "<|bos|>"  # separates documents in the token stream; scored as 0 bytes, so never counted
# GPT-4 style pre-tokenisation (as nanochat): digits in pairs, runs of spaces kept together.
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
_FORMAT = 2  # bump when the cache layout changes (2: the held-out documents left out of train.bin)


def _fail(message):
    """One clear line and a non-zero exit: a bad data spec is the user's to fix, not a traceback."""
    raise SystemExit(f"error: {message}")


# ---------------------------------------------------------------------------
# Data sources: each yields (name, text) documents in a fixed order
# ---------------------------------------------------------------------------

def _embedded_docs():
    """The running Python's own standard library: ~31 MB of source on every machine, no network."""
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "site-packages" in rel.parts or "dist-packages" in rel.parts:
            continue
        yield rel.as_posix(), path.read_text(encoding="utf-8", errors="replace")


def _text_docs(path):
    """A text file cut into ~16 KB pieces at line ends, so a hash can hold some out."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    start, i = 0, 0
    while start < len(text):
        end = text.find("\n", start + 16384)
        end = len(text) if end < 0 else end + 1
        yield f"{i:08d}", text[start:end]
        start, i = end, i + 1


def _parquet_docs(folder):
    import pyarrow.parquet as pq  # only parquet specs need pyarrow

    for shard in sorted(Path(folder).glob("*.parquet")):
        table = pq.read_table(shard, columns=["text"])
        for i, text in enumerate(table.column("text").to_pylist()):
            if text:
                yield f"{shard.name}:{i}", text


def _hf_download(dataset, dest):
    """First HF_SHARDS parquet shards of a Hugging Face dataset repo (optionally a folder of it).
    The endpoint is $HF_ENDPOINT (default https://huggingface.co), a mirror or a local server."""
    parts = dataset.split("/")
    repo, folder = "/".join(parts[:2]), "/".join(parts[2:])
    base = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ['HF_TOKEN']}"} if os.environ.get("HF_TOKEN") else {}

    def get(url):
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as r:
            return r.read()

    listing = f"{base}/api/datasets/{repo}/tree/main/{folder}".rstrip("/") + "?recursive=true"
    try:
        entries = json.loads(get(listing))
    except OSError as e:
        _fail(f"cannot list hf dataset {dataset} at {listing} ({e}) — check the name and the network, or use parquet:DIR")
    shards = sorted(e["path"] for e in entries if e.get("type") == "file" and e["path"].endswith(".parquet"))
    if not shards:
        _fail(f"hf dataset {dataset} has no .parquet files — name a folder that holds them, e.g. hf:{repo}/data")
    dest.mkdir(parents=True, exist_ok=True)
    for path in shards[:HF_SHARDS]:
        target = dest / path.replace("/", "__")
        if not target.exists():
            print(f"downloading {repo}/{path}", flush=True)
            tmp = target.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(get(f"{base}/datasets/{repo}/resolve/main/{path}"))
            os.replace(tmp, target)
    return dest


def parse_spec(spec):
    """(kind, argument) of a data spec; exits with one line if it is malformed."""
    kind, _, arg = spec.partition(":")
    if kind == "embedded" and not arg:
        return kind, ""
    if kind in ("text", "parquet", "hf") and arg:
        return kind, arg
    _fail(f"bad data spec {spec!r} — use embedded, text:PATH, parquet:DIR or hf:OWNER/NAME")


def _documents(spec):
    kind, arg = parse_spec(spec)
    if kind == "embedded":
        return _embedded_docs()
    if kind == "text":
        if not Path(arg).is_file():
            _fail(f"text file {arg} not found — pass an existing file as text:PATH")
        return _text_docs(arg)
    if kind == "parquet":
        if not any(Path(arg).glob("*.parquet")):
            _fail(f"no .parquet files in {arg} — pass a folder of shards with a `text` column")
        return _parquet_docs(arg)
    return _parquet_docs(_hf_download(arg, CACHE_DIR / "hf" / arg.replace("/", "__")))


def _fingerprint(spec):
    """Cheap identity of the source, so an edited file or another Python gets a fresh cache."""
    kind, arg = parse_spec(spec)
    if kind == "embedded":
        return [sysconfig.get_paths()["stdlib"], sys.version]
    if kind == "text" and Path(arg).is_file():
        st = Path(arg).stat()
        return [str(Path(arg).resolve()), st.st_size, st.st_mtime_ns]
    if kind == "parquet":
        return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in Path(arg).glob("*.parquet"))
    return [HF_SHARDS]


def split_of(name):
    """"val", "heldout" or "train" for a document, by a hash of its name. Held-out documents are
    in neither token file: the tokenizer never learns from them and no run trains or evaluates
    on them. The harness tokenizes them itself (`python -m overnight.heldout`) and keeps the
    tokens where no file of a run names them, to check that a val_bpb gain is not a fit of
    the validation tokens."""
    h = zlib.crc32(name.encode()) % 1000
    return "val" if h < VAL_PERMILLE else "heldout" if h < VAL_PERMILLE + HELDOUT_PERMILLE else "train"


# ---------------------------------------------------------------------------
# Cache: tokenizer + token arrays, built once, safe when two runs start at once
# ---------------------------------------------------------------------------

def cache_path(spec=DATA):
    key = json.dumps([_FORMAT, spec, VOCAB_SIZE, SPLIT_PATTERN, VAL_PERMILLE, HELDOUT_PERMILLE, _fingerprint(spec)])
    return CACHE_DIR / f"{re.sub(r'[^A-Za-z0-9]+', '-', spec)[:40]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _build(spec, out):
    """Train the BPE on the training documents, then encode every document into train.bin / val.bin."""
    import rustbpe

    t0 = time.time()
    tok = rustbpe.Tokenizer()
    budget = [TOKENIZER_CHARS]

    def train_text():  # the tokenizer never sees the validation or held-out documents
        for name, text in _documents(spec):
            if budget[0] <= 0:
                return
            if split_of(name) == "train":
                budget[0] -= len(text)
                yield text

    tok.train_from_iterator(train_text(), VOCAB_SIZE - 1, pattern=SPLIT_PATTERN)
    ranks = {bytes(k): v for k, v in tok.get_mergeable_ranks()}
    if len(ranks) < VOCAB_SIZE - 1:
        _fail(f"the data only supports {len(ranks) + 1} tokens, VOCAB_SIZE is {VOCAB_SIZE} — use more text")
    with open(out / "tokenizer.txt", "w") as f:
        for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(token).decode()} {rank}\n")
    enc = Tokenizer(out).enc
    t1 = time.time()

    digest, counts, nbytes = hashlib.sha256(), {"train": 0, "val": 0}, {"train": 0, "val": 0, "heldout": 0}
    files = {split: open(out / f"{split}.bin", "wb") for split in counts}
    batch = []

    def flush():
        ids = enc.encode_ordinary_batch([text for _, text in batch], num_threads=os.cpu_count() or 1)
        for (split, _), doc in zip(batch, ids):
            arr = np.array([VOCAB_SIZE - 1] + doc, dtype=np.uint16)  # BOS first
            arr.tofile(files[split])
            counts[split] += len(arr)
        batch.clear()

    for name, text in _documents(spec):
        data = text.encode("utf-8", errors="replace")
        digest.update(name.encode() + b"\0" + data + b"\0")
        split = split_of(name)
        nbytes[split] += len(data)
        if split == "heldout":  # counted, never tokenized here
            continue
        batch.append((split, text))
        if len(batch) >= 512:
            flush()
    flush()
    for f in files.values():
        f.close()
    if counts["val"] < 2 * MAX_SEQ_LEN or counts["train"] < 8 * MAX_SEQ_LEN:
        _fail(f"too little text ({counts['train']} train, {counts['val']} validation tokens) — use a larger data set")
    meta = dict(spec=spec, data_hash=digest.hexdigest(), vocab_size=VOCAB_SIZE, tokens=counts, bytes=nbytes,
                tokenizer_seconds=round(t1 - t0, 2), encode_seconds=round(time.time() - t1, 2))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return meta


def prepare(spec=DATA):
    """The cache folder for `spec`, built if missing. Concurrent runs: one builds under a lock in
    a private folder and renames it into place; the others wait on the lock, then reuse it."""
    final = cache_path(spec)
    if (final / "meta.json").exists():
        return final
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(str(final) + ".lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no flock (Windows): both may build; the rename below still keeps one
            pass
        if (final / "meta.json").exists():
            return final
        t0 = time.time()
        print(f"building the data cache for {spec!r} in {final} (once)", flush=True)
        tmp = Path(f"{final}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            meta = _build(spec, tmp)
            shutil.rmtree(final, ignore_errors=True)  # a half-built folder of a killed run
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"data cache built in {time.time() - t0:.1f}s: {meta['tokens']['train']:,} train and "
              f"{meta['tokens']['val']:,} validation tokens, data hash {meta['data_hash'][:16]}", flush=True)
    return final


# ---------------------------------------------------------------------------
# Tokenizer: rustbpe-trained merges, used through tiktoken
# ---------------------------------------------------------------------------

class Tokenizer:
    def __init__(self, folder=None):
        import tiktoken

        folder = Path(folder) if folder else prepare()
        ranks = {}
        for line in (folder / "tokenizer.txt").read_text().splitlines():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
        self.enc = tiktoken.Encoding(name="overnight", pat_str=SPLIT_PATTERN, mergeable_ranks=ranks,
                                     special_tokens={BOS: len(ranks)})
        self.bos_token_id = len(ranks)

    def get_vocab_size(self):
        return self.enc.n_vocab

    def encode(self, text):
        return self.enc.encode_ordinary(text)

    def decode(self, ids):
        return self.enc.decode(ids)

    def token_bytes(self):
        """Bytes each token stands for; 0 for special tokens, which evaluate_bpb then skips."""
        sizes = [len(self.enc.decode_single_token_bytes(i)) for i in range(self.bos_token_id)]
        return np.array(sizes + [0] * (self.get_vocab_size() - self.bos_token_id), dtype=np.int64)


def _tokens(split):
    return np.memmap(prepare() / f"{split}.bin", dtype=np.uint16, mode="r")


def data_hash():
    return json.loads((prepare() / "meta.json").read_text())["data_hash"]


# ---------------------------------------------------------------------------
# The training budget: counted here, where no edit of train.py can move it
# ---------------------------------------------------------------------------

def _runqueue_seconds():
    """Seconds this process's threads have spent ready to run but waiting for a CPU that
    another process held (Linux schedstat, summed over threads); None where the kernel does not
    say (not Linux, or no schedstats), and then the steps and tokens clocks time the wall."""
    total, seen = 0, False
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
            seen = True
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return total / 1e9 if seen else None


class TrainingBudget:
    """How long train.py may train, decided by this file. The training split's batches come
    from make_dataloader, which counts their tokens here; train.py's loop asks `next_step()`
    before each step, and this times the step that just ended. Training ends when the budget
    (TIME_BUDGET seconds, OVERNIGHT_BUDGET) is spent by the clock's measure (`[task] clock`,
    OVERNIGHT_CLOCK); a loader asked for more after that refuses, and what report() writes as
    training_seconds is counted here, never by train.py.

    - wall: the steps' wall time. cpu: their CPU time over the threads (docs/task-spec.md).
      Under both, the first EXCLUDED_STEPS (compile, warm-up) are not timed and are charged at
      the median timed step, so a candidate cannot make them big and free.
    - tokens: the baseline's calibrated compute in tokens of this model (training_tokens).
    - steps: the tokens the budget buys at this commit's own seconds per token. A step is timed
      as its wall time less the time its threads waited for a CPU that others held
      (_runqueue_seconds): about what it would take alone, so load does not make it dear, and
      sleep, a second pass or a slower model does. A commit's first run trains until its
      tokens times its median cost per timed token reach the budget, and the harness journals
      that cost: every later run of the commit gets it (OVERNIGHT_COST) and trains the same
      tokens, so the same commit under the same seed trains the same steps whatever the load.
      A first run whose measure is within COST_TOLERANCE of its parent's cost
      (OVERNIGHT_COST_REF) takes the parent's: a change that leaves the cost alone trains
      exactly the parent's steps, not a count re-drawn from the noise of one measurement.
      What it does not charge: a cost difference within the tolerance; what load does to a
      core's speed (caches, memory bandwidth); waits of a run's threads for CPUs its own other
      threads hold, which it subtracts as if others held them (the harness's wall-time limit
      still holds)."""

    def __init__(self):
        if CLOCK not in CLOCKS:
            _fail(f"OVERNIGHT_CLOCK is {CLOCK!r} — use {', '.join(CLOCKS)}")
        self.budget = TIME_BUDGET
        self.cost = _env_seconds("OVERNIGHT_COST")  # this commit's seconds per token, journaled
        self.cost_ref = _env_seconds("OVERNIGHT_COST_REF")  # its parent's: what a first measure is compared with
        self.tokens = 0  # training tokens served, by every training loader of this process
        self.steps = 0  # steps begun
        self.step_tokens, self.step_seconds, self.step_wall = [], [], []  # ended steps; seconds by the clock
        self.limit = None  # tokens, under the tokens clock
        self.spent_at = None  # tokens served when the budget was found spent
        self.stop_after = None  # the task's setup: stop after this many steps, whatever the budget
        self._mark = None  # (tokens, wall, cpu, runqueue) at the last step boundary
        self._threads = None
        self._timed_costs = []  # seconds per token of the timed steps, kept sorted (the median at any step)
        self._timed_seconds = 0.0

    def attach(self, model):
        """The model trained, for the tokens clock's FLOPs scale; once."""
        if CLOCK == "tokens" and self.limit is None:
            self.limit = training_tokens(model)
        return self

    # --- what train.py calls ---------------------------------------------------------------
    def next_step(self):
        """Close the step that just ended (time it) and say whether another may begin."""
        _MARKS.setdefault("training", time.time())
        self._close_step()
        if self.stop_after is not None and self.steps >= self.stop_after:
            return self._spent()
        if self.fraction() >= 1.0:
            return self._spent()
        self.steps += 1
        return True

    def progress(self):
        """Fraction of the budget spent, 0..1, for the schedules (learning rate, weight decay)."""
        return min(self.fraction(), 1.0)

    def tokens_per_second(self):
        """Training throughput over the timed steps, by the wall clock (for display and MFU)."""
        timed = slice(EXCLUDED_STEPS, None)
        wall = sum(self.step_wall[timed])
        return sum(self.step_tokens[timed]) / wall if wall > 0 else 0.0

    # --- what the loader calls -------------------------------------------------------------
    def serve(self, tokens):
        cost = self.charged_cost() if CLOCK == "steps" else None  # a loop that never asks next_step(): 2x, then no more
        if self.spent_at is not None or (cost and self.tokens * cost >= 2 * self.budget):
            raise SystemExit("error: the training budget is spent — train.py's loop must end when "
                             "budget.next_step() returns False")
        self.tokens += tokens

    # --- the accounting --------------------------------------------------------------------
    def _sample(self):
        if self._threads is None:
            import torch

            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            self._threads = max(1, min(torch.get_num_threads(), cores))
        queued = _runqueue_seconds() if CLOCK in ("steps", "tokens") else None
        return self.tokens, time.perf_counter(), time.process_time() / self._threads, queued

    def _close_step(self):
        now = self._sample()
        if self._mark is not None:
            tokens = now[0] - self._mark[0]
            if tokens == 0:
                return  # no batch since the last call: the same step goes on
            wall = now[1] - self._mark[1]
            if CLOCK == "cpu":
                seconds = now[2] - self._mark[2]
            elif CLOCK == "wall" or now[3] is None or self._mark[3] is None:
                seconds = wall
            else:  # steps, tokens: less the time others held the CPUs its threads waited for
                seconds = wall - min(max(now[3] - self._mark[3], 0.0), wall)
            self.step_tokens.append(tokens)
            self.step_seconds.append(seconds)
            self.step_wall.append(wall)
            if len(self.step_tokens) > EXCLUDED_STEPS:
                bisect.insort(self._timed_costs, seconds / tokens)
                self._timed_seconds += seconds
        self._mark = now

    def measured_cost(self):
        """Median seconds per token of the timed steps, by the clock's measure (None before one)."""
        costs, n = self._timed_costs, len(self._timed_costs)
        return None if n == 0 else costs[n // 2] if n % 2 else (costs[n // 2 - 1] + costs[n // 2]) / 2

    def measured_seconds(self):
        """Seconds of training by the clock's measure: the timed steps, and the untimed ones at
        the median cost per token."""
        cost = self.measured_cost()
        untimed = sum(self.step_tokens[:EXCLUDED_STEPS]) * cost if cost is not None else 0.0
        return self._timed_seconds + untimed

    def charged_cost(self):
        """The steps clock's seconds per token: the journaled cost, else the parent's when the
        measure so far is within COST_TOLERANCE of it, else the measure (None before any)."""
        if self.cost is not None:
            return self.cost
        measured = self.measured_cost()
        if measured is None or self.cost_ref is not None and abs(measured / self.cost_ref - 1) <= COST_TOLERANCE:
            return self.cost_ref
        return measured

    def fraction(self):
        """Fraction of the budget used so far, by the clock."""
        if CLOCK == "tokens":
            return self.tokens / self.limit if self.limit else 0.0
        if CLOCK == "steps":
            cost = self.charged_cost()
            return self.tokens * cost / self.budget if cost else 0.0
        return self.measured_seconds() / self.budget

    def _spent(self):
        _MARKS.setdefault("trained", time.time())
        if self.spent_at is None:
            self.spent_at = self.tokens
        return False

    def summary(self):
        """The figures report() writes: the budget charged, and what the run measured."""
        out = {"training_seconds": self.budget * self.fraction() if CLOCK in ("tokens", "steps")
               else self.measured_seconds(), "num_steps": len(self.step_tokens), "total_tokens_M": self.tokens / 1e6,
               "clock": CLOCK}
        if CLOCK == "steps":  # (the tokens clock charges FLOPs, not time: its seconds are not the budget's)
            out.update(measured_seconds=self.measured_seconds(), cost=self.charged_cost(), cost_ref=self.cost_ref,
                       measured_cost=self.measured_cost())
        return out


BUDGET = TrainingBudget()


def training_budget(model=None):
    """The process's training budget (one per run), with the model it trains."""
    return BUDGET.attach(model) if model is not None else BUDGET


# ---------------------------------------------------------------------------
# Dataloader and evaluation
# ---------------------------------------------------------------------------

def make_dataloader(batch_size, seq_len=MAX_SEQ_LEN, split="train", seed=SEED, device="cpu"):
    """Endless (inputs, targets) batches of random windows of the token stream. The windows come
    from a generator seeded with `seed` alone: the same seed gives the same batches."""
    tokens = _tokens(split)
    rng = np.random.default_rng(seed)
    offsets = np.arange(seq_len + 1)
    import torch

    while True:
        if split == "train":
            BUDGET.serve(batch_size * seq_len)  # every training token counts against the budget
        starts = rng.integers(0, len(tokens) - seq_len - 1, size=batch_size)
        chunk = torch.from_numpy(tokens[starts[:, None] + offsets].astype(np.int64))
        if torch.device(device).type == "cuda":
            chunk = chunk.pin_memory().to(device, non_blocking=True)
        else:
            chunk = chunk.to(device)
        yield chunk[:, :-1], chunk[:, 1:]


def bits_per_byte(model, tokens, token_bytes, batch_size, seq_len, max_tokens, device):
    """Bits per byte of `tokens` under `model(x, y, reduction="none")` (per-token nats). Targets
    are consecutive windows; tokens of 0 bytes (special) count neither nats nor bytes, so the
    figure does not depend on the vocabulary."""
    import torch

    n = min(max_tokens, len(tokens) - 1) // seq_len  # whole windows only
    token_bytes = torch.as_tensor(token_bytes, device=device)
    nats = total_bytes = 0.0
    with torch.no_grad():
        for i in range(0, n, batch_size):
            rows = min(batch_size, n - i)
            chunk = np.asarray(tokens[i * seq_len : (i + rows) * seq_len + 1], dtype=np.int64)
            x = torch.from_numpy(chunk[:-1].reshape(rows, seq_len)).to(device)
            y = torch.from_numpy(chunk[1:].reshape(rows, seq_len)).to(device)
            loss = model(x, y, reduction="none").float().view(-1)
            nbytes = token_bytes[y.view(-1)]
            nats += (loss * (nbytes > 0)).sum().item()
            total_bytes += nbytes.sum().item()
    return nats / (math.log(2) * total_bytes)


_measured = {}


def evaluate_bpb(model, batch_size, device="cpu"):
    """val_bpb over the first EVAL_TOKENS of the fixed validation split. report() writes this
    measured value, never one passed to it."""
    _MARKS.setdefault("evaluation", time.time())
    tokenizer = Tokenizer()
    bpb = bits_per_byte(model, _tokens("val"), tokenizer.token_bytes(), batch_size, MAX_SEQ_LEN,
                        EVAL_TOKENS, device)
    _MARKS.setdefault("evaluated", time.time())
    _measured.update(val_bpb=bpb, model=model, batch_size=batch_size, autocast=_autocast_dtype(device))
    return bpb


def _autocast_dtype(device):
    import torch

    kind = torch.device(device).type
    return str(torch.get_autocast_dtype(kind)).removeprefix("torch.") if torch.is_autocast_enabled(kind) else None


def _save_checkpoint(path):
    """The weights evaluate_bpb scored, for the harness's re-score (rescore below): a state
    dict of tensors and plain values only, so loading it never runs code (weights_only)."""
    import dataclasses

    import torch

    model = _measured["model"]
    config = dataclasses.asdict(model.config) if dataclasses.is_dataclass(getattr(model, "config", None)) else None
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "config": config,
                "batch_size": _measured["batch_size"], "autocast": _measured["autocast"]}, path)


BF16_MARGIN = 1.2  # bf16 must beat fp32 by this factor in the probe to be chosen on a CPU


def bf16_is_fast(device):
    """(use bf16?, why) for `device`. bf16 autocast (and bf16 in Muon) only where it is faster:
    CUDA with bf16 (about 2x); never where the CPU emulates it (an AVX2 CPU: a 2048x192 @
    192x768 matmul took 319 ms in bf16, 26 ms in fp32; the cpu preset trained at 310 tokens/s
    in bf16 and learned nothing). Hardware bf16 on a CPU is not always faster either (AVX-512
    BF16 without AMX: the cpu preset ran 1.5x faster in fp32, bench/task_throughput.py), so
    there a timed matmul decides (_probe_cpu). MPS stays fp32.
    OVERNIGHT_PRECISION=bf16|fp32 forces the choice (default: auto)."""
    import torch

    forced = os.environ.get("OVERNIGHT_PRECISION", "auto").strip().lower() or "auto"
    if forced in ("bf16", "fp32"):
        return forced == "bf16", "forced by OVERNIGHT_PRECISION"
    if forced != "auto":
        _fail(f"OVERNIGHT_PRECISION={forced!r} — use auto, bf16 or fp32")
    kind = torch.device(device).type
    if kind == "cuda":
        return (True, "CUDA with bf16") if torch.cuda.is_bf16_supported() else (False, "this GPU has no bf16")
    if kind != "cpu":
        return False, f"{kind}: fp32"
    # The kernels torch dispatches to must use it too (ATEN_CPU_CAPABILITY=avx2 turns them
    # down to AVX2, as on a CPU without AVX-512).
    kernels = torch.backends.cpu.get_cpu_capability()
    if not ("AVX512" in kernels and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())):
        return False, "this CPU has no hardware bf16 (bf16 would be emulated, ~12x slower)"
    return _probe_cpu(kernels)


def _probe_cpu(kernels):
    """A CPU with hardware bf16: a timed matmul of the cpu preset's size in each precision,
    once per machine, torch and thread count. The answer is kept in the cache folder, so every
    run of a night trains in the same precision (the task's setup probes before the first)."""
    import torch

    key = "|".join(map(str, ["cpu", torch.__version__, kernels, torch.cpu._is_avx512_bf16_supported(),
                             torch.cpu._is_amx_tile_supported(), torch.get_num_threads()]))
    path = CACHE_DIR / "precision.json"

    def read():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    known = read()
    if key not in known:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        with open(str(path) + ".lock", "w") as lock:  # two first runs at once: one probes, both agree
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:
                pass
            known = read()
            if key not in known:
                fp32_ms, bf16_ms = (1000 * t for t in _matmul_seconds())
                known[key] = {"bf16": fp32_ms >= BF16_MARGIN * bf16_ms,
                              "why": f"hardware bf16; a 2048x256 @ 256x1024 matmul took {bf16_ms:.1f} ms in "
                                     f"bf16, {fp32_ms:.1f} ms in fp32"}
                tmp = path.with_name(f"precision.json.tmp{os.getpid()}")
                tmp.write_text(json.dumps(known, indent=1))
                os.replace(tmp, path)
    return known[key]["bf16"], f"{known[key]['why']}; measured once, kept in {path}"


def _matmul_seconds(repeats=7):
    """(fp32, bf16) median seconds of one matmul, the two interleaved so that load hits both."""
    import statistics

    import torch

    a, b = torch.randn(2048, 256), torch.randn(256, 1024)
    pairs = {torch.float32: (a, b), torch.bfloat16: (a.bfloat16(), b.bfloat16())}
    times = {dtype: [] for dtype in pairs}
    for i in range(repeats + 2):
        for dtype, (x, y) in pairs.items():
            t0 = time.perf_counter()
            x @ y
            if i >= 2:  # the first two warm the kernels up
                times[dtype].append(time.perf_counter() - t0)
    return statistics.median(times[torch.float32]), statistics.median(times[torch.bfloat16])


def peak_memory_mb(device="cpu"):
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def report(device="cpu", **figures):
    """The run's summary: `---` then `key: value` lines on stdout, and the same figures as JSON
    in $OVERNIGHT_RESULT. val_bpb, total_seconds, peak memory and the training budget's figures
    (training_seconds, num_steps, total_tokens_M, ...: TrainingBudget.summary) are measured
    here; a figure of train.py's by one of those names is ignored."""
    if "val_bpb" not in _measured:
        raise RuntimeError("report() before evaluate_bpb(): there is no metric to report")
    budget = BUDGET.summary()
    summary = {"val_bpb": _measured["val_bpb"], "training_seconds": budget.pop("training_seconds"),
               "total_seconds": time.time() - _T0, "peak_memory_mb": peak_memory_mb(device), **budget}
    summary.update((k, v) for k, v in figures.items() if k not in summary)
    summary = {k: round(v, 6) if isinstance(v, float) and k not in _EXACT else v for k, v in summary.items()}
    print("---")
    for key, value in summary.items():
        if value is None:
            continue
        print(f"{key + ':':<20}{value:.6g}" if key in _EXACT else f"{key + ':':<20}{value:.6f}" if isinstance(value, float)
              else f"{key + ':':<20}{value}")
    result = os.environ.get("OVERNIGHT_RESULT")
    if result:
        _MARKS["checkpoint"] = time.time()
        _save_checkpoint(Path(result).parent / "model.pt")
        extra = {"data": DATA, "data_hash": data_hash(), "seed": SEED, "budget": TIME_BUDGET, "phases": phases()}
        tmp = Path(result + ".tmp")
        tmp.write_text(json.dumps({**summary, **extra}, indent=1))
        os.replace(tmp, result)  # the harness never reads a half-written file
    return summary


def leave():
    """End the process now, its output flushed, without the interpreter's teardown (with torch
    loaded it took 1-1.7 s of every run on a 2-core CPU: bench/run_phases.py). Inside `prepare.py
    --setup`, which runs train.py in its own process and goes on after it, this returns."""
    if BUDGET.stop_after is not None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def phases():
    """Seconds of this run by phase, measured here: start (interpreter and imports, up to this
    module's), build (tokenizer, model, optimizers, loaders), first_steps (the untimed ones:
    compilation), training (the timed steps' wall time), evaluation, checkpoint, and other (the
    rest up to now). The harness adds what it sees outside the process (bench/run_phases.py)."""
    now, m, walls = time.time(), _MARKS, BUDGET.step_wall
    out = {"start": m["imported"] - _T0, "build": m.get("training", m["imported"]) - m["imported"],
           "first_steps": sum(walls[:EXCLUDED_STEPS]), "training": sum(walls[EXCLUDED_STEPS:])}
    if "evaluated" in m:
        out["evaluation"] = m["evaluated"] - m["evaluation"]
    if "checkpoint" in m:
        out["checkpoint"] = now - m["checkpoint"]
    out["other"] = max(0.0, now - _T0 - sum(out.values()))
    return {k: round(v, 3) for k, v in out.items()}


_EXACT = ("cost", "cost_ref", "measured_cost")  # seconds per token: far below 1e-6, kept whole


def _definitions(path="train.py"):
    """train.py's imports, functions, classes and UPPER_CASE constants run in a fresh namespace:
    the model's definition without the rest of the script (no training loop)."""
    import ast

    tree = ast.parse(Path(path).read_text())

    def wanted(node):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            return True
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        return bool(targets) and all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)

    namespace = {"__name__": "train_definitions"}
    exec(compile(ast.Module([n for n in tree.body if wanted(n)], type_ignores=[]), path, "exec"), namespace)
    return namespace


def causality_gap(model, tokens, seq_len, vocab_size, device="cpu"):
    """How much the model's logits for the first half of a window move when only the second
    half changes (0 for a causal model, up to float noise). A model that peeks at the tokens it
    is asked to predict scores far better than it should; the re-score refuses it."""
    import torch

    x = torch.as_tensor(np.asarray(tokens[:seq_len], dtype=np.int64), device=device)[None]
    y = x.clone()
    half = seq_len // 2
    y[:, half:] = (y[:, half:] + 1) % vocab_size
    with torch.no_grad():
        a, b = model(x)[:, :half].float(), model(y)[:, :half].float()
    return (a - b).abs().max().item()


CAUSALITY_TOLERANCE = 1e-2  # logits are soft-capped at 15; bf16 noise is far below this


def rescore():
    """`python prepare.py --rescore` (overnight.toml task.rescore): in a fresh process, build the
    model from train.py's definitions, load the weights the run's report() saved, and score
    them on the same validation tokens with the loss computed here from the model's logits
    (not by the model's own loss code). The harness compares this with the run's val_bpb."""
    bpb = score_saved_model(Path(os.environ["OVERNIGHT_RESCORE"]).parent, _tokens("val"))
    with open(os.environ["OVERNIGHT_RESULT"], "w") as f:
        json.dump({"val_bpb": bpb}, f)
    print(f"re-scored val_bpb: {bpb:.6f}")


def score_saved_model(run_dir, tokens):
    """Bits per byte of `tokens` (at most EVAL_TOKENS) under the weights report() saved in
    `run_dir`, rebuilt from train.py's definitions; refuses a model that is not causal. Used by
    the re-score (validation tokens) and by the harness's held-out score (held-out tokens)."""
    import torch
    import torch.nn.functional as F

    ckpt = torch.load(Path(run_dir) / "model.pt", map_location="cpu", weights_only=True)
    if ckpt["config"] is None:
        _fail("the model evaluate_bpb() scored has no dataclass .config — the re-score cannot rebuild it")
    defs = _definitions()
    model = defs["GPT"](defs["GPTConfig"](**ckpt["config"]))
    model.load_state_dict(ckpt["state_dict"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()

    class Logits(torch.nn.Module):  # the loss computed here, from what the model predicts
        def forward(self, x, y, reduction="none"):
            logits = model(x).float()
            return F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="none").view(y.shape)

    dtype = ckpt["autocast"]
    ctx = torch.amp.autocast(device_type=device, dtype=getattr(torch, dtype)) if dtype else torch.no_grad()
    with ctx:
        gap = causality_gap(model, tokens, MAX_SEQ_LEN, ckpt["config"]["vocab_size"], device)
    if gap > CAUSALITY_TOLERANCE:
        _fail(f"the model's logits for early tokens change by {gap:.3g} when only later tokens change: "
              "it is not causal, its val_bpb is not a prediction score")
    with ctx:
        return bits_per_byte(Logits(), tokens, Tokenizer().token_bytes(), ckpt["batch_size"], MAX_SEQ_LEN,
                             EVAL_TOKENS, device)


def setup():
    """`python prepare.py --setup` (overnight.toml task.setup): run once by the harness before a
    night's first run, outside every run's clock and timeout. Builds the data cache, then runs
    train.py for its untimed warm-up steps (EXCLUDED_STEPS + 1) with a one-window evaluation:
    that compiles the model, and the inductor cache then holds the kernels for this shape, so
    no timed run pays a cold compile (a candidate that changes the shape still compiles in its
    run). Under the tokens clock, the first time on a machine, it trains COST_STEPS more to
    calibrate the clock. Nothing is written where the harness looks for results."""
    import runpy

    t0 = time.time()
    folder = prepare()
    os.environ.pop("OVERNIGHT_RESULT", None)
    sys.modules.pop("prepare", None)
    import prepare as module  # the module train.py imports (this file runs as __main__)

    calibrate = module.CLOCK == "tokens" and _calibration() is None
    if calibrate:
        module.CLOCK = "steps"  # timed as the steps clock times a step (load-proof), with no reference
    module.BUDGET = module.TrainingBudget()
    module.BUDGET.budget = 1e9  # stop_after ends it: the untimed steps and one timed, or the calibration's
    module.BUDGET.cost = module.BUDGET.cost_ref = None
    module.BUDGET.stop_after = EXCLUDED_STEPS + (COST_STEPS if calibrate else 1)
    module.EVAL_TOKENS = module.MAX_SEQ_LEN  # one window: the evaluation is not what warms up
    train = Path(__file__).with_name("train.py")
    if train.exists():
        trained = runpy.run_path(str(train), run_name="__main__")
        if calibrate:
            _write_calibration(1 / module.BUDGET.measured_cost(), matmul_flops_per_token(trained["model"]), module.BUDGET)
    print(f"setup done in {time.time() - t0:.1f}s: data cache {folder}, compile cache "
          f"{os.environ['TORCHINDUCTOR_CACHE_DIR']}", flush=True)


def _write_calibration(rate, flops_per_token, budget):
    """The tokens clock's rate: tokens per second of the baseline over the setup's timed steps
    (compile and warm-up excluded), timed as the steps clock times them (less the time others
    held the CPU), and the model's FLOPs per token; written once per machine (delete the file
    to measure again)."""
    path = _calibration_path()
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"tokens_per_second": rate, "flops_per_token": flops_per_token,
                               "timed_steps": len(budget.step_tokens) - EXCLUDED_STEPS,
                               "seconds": budget.measured_seconds(), "measured": time.ctime()}, indent=1))
    os.replace(tmp, path)
    print(f"tokens clock: {rate:,.0f} tokens/s over {len(budget.step_tokens) - EXCLUDED_STEPS} steps, kept in {path}",
          flush=True)


if __name__ == "__main__" and sys.argv[1:] == ["--rescore"]:
    rescore()
elif __name__ == "__main__" and sys.argv[1:] == ["--setup"]:
    setup()
elif __name__ == "__main__":
    folder = prepare()
    print(json.dumps(json.loads((folder / "meta.json").read_text()), indent=1))
