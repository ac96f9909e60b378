"""The worker process: launches DBOS, serves queues, heartbeats, answers its admin endpoint."""
