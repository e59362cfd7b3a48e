// Re-mixing of routing pathways (kernel regression, mode finding, task weights, oracle).
