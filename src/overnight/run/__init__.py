"""One run: process supervision, the run and its outcome, the re-score and the held-out score."""
