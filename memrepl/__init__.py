"""memrepl: durable, replicated three-tier memory for AI agents."""
