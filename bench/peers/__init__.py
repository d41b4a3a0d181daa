"""Kubepredict vs MLServer side by side with wrk (``make bench-peers``); see ``__main__`` for the knobs."""
