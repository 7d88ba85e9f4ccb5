"""autoresearch's results.tsv, rewritten from the journal at every decision: one row per
finished experiment (commit, value, memory in GB, keep/discard/crash, description), so its
readers and tools work on a night's as they do on autoresearch's."""

from __future__ import annotations

from pathlib import Path

from overnight.records import Experiment, ExpStatus

# autoresearch's results.tsv knows three statuses.
TSV_STATUS = {
    ExpStatus.KEPT: "keep",
    ExpStatus.DISCARDED: "discard",
    ExpStatus.DUPLICATE: "discard",
    ExpStatus.SCREENED: "discard",
}
TSV_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"


def write_results_tsv(experiments: list[Experiment], path: Path) -> None:
    """The finished ones of `experiments` as results.tsv at `path`, written atomically."""
    lines = [TSV_HEADER]
    for e in experiments:
        if not e.status.final:
            continue
        word = TSV_STATUS.get(e.status, "crash")  # autoresearch's word for it
        value = e.value if (e.value is not None and e.status in TSV_STATUS) else 0.0
        mem = (e.peak_memory_mb or 0.0) / 1024
        desc = " ".join(e.description.split()).replace("\t", " ")
        if e.status == ExpStatus.SCREENED:  # its only value is a short run's (not comparable)
            short = [r for r in e.screens if r.value is not None]
            value = short[-1].value if short else 0.0
            given = f" at {short[-1].budget:g} s" if short and short[-1].budget else ""
            desc += f" [screened out{given}]"
        lines.append(f"{(e.commit_sha or '0000000')[:7]}\t{value:.6f}\t{mem:.1f}\t{word}\t{desc}\n")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
