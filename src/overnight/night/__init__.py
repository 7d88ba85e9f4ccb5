"""The night: the controller, the scheduler (the loop), the proposer's thread, the re-scores and the keep."""
