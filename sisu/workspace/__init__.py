"""A run's workspace: where its plan is applied and its command runs."""
