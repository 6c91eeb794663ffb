"""The token economy: products (packs, subscriptions), funding a request from them, budgets."""
