"""Qt-free core: job statuses and transitions, progress and cancellation."""
