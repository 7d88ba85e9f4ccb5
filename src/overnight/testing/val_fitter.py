"""The fit-the-validation-tokens attack on nanogpt's train.py, shared by the slow adversarial
test and bench/heldout.py: the training loader is swapped for windows of the first
EVAL_TOKENS of the validation split, exactly the tokens evaluate_bpb scores. Its loader counts
its tokens against the training budget as the real one does (prepare.BUDGET): a loader that
does not trains until the hard timeout and is a budget cheat, caught as such, not this attack."""

LOADER = 'train_loader = make_dataloader(device_batch_size, MAX_SEQ_LEN, "train", seed=SEED, device=device)'
VAL_FITTER = """
def _val_windows(batch_size, seq_len, seed, device):  # the attack: the evaluated tokens themselves
    import numpy as _np
    import prepare as _prep
    import torch as _torch
    toks = _np.asarray(_prep._tokens("val")[:_prep.EVAL_TOKENS + 1], dtype=_np.int64)
    rng, offs = _np.random.default_rng(seed), _np.arange(seq_len + 1)
    while True:
        _prep.BUDGET.serve(batch_size * seq_len)  # counted as the real loader counts: it stays in budget
        chunk = _torch.from_numpy(toks[rng.integers(0, len(toks) - seq_len - 1, size=batch_size)[:, None] + offs])
        yield chunk[:, :-1].to(device), chunk[:, 1:].to(device)

"""


def val_fitter(train: str) -> str:
    """`train` (nanogpt's train.py) turned into the attack."""
    assert LOADER in train, "nanogpt's train.py no longer builds its loader this way"
    fitter = train.replace(LOADER, "train_loader = _val_windows(device_batch_size, MAX_SEQ_LEN, SEED, device)")
    return fitter.replace("\n# ----", VAL_FITTER + "# ----", 1)
