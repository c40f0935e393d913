"""The `layoutray` command: argument parsing and printing; the work is in the library, the job
entry points in trainables/, the rollout client in serving/."""
