"""Runtime plumbing shared by every component: config, logs, supervision, retry, batching."""
