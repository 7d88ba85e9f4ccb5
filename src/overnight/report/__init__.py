"""What a person reads: status numbers, the live view, report.md and progress.png."""
