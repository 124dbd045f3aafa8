"""Discovery: K estimation and Cluster-Vote-Prompt-Realign (spec sections 4 and 5)."""
