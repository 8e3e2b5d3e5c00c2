"""Long-running commands (server, worker, agent, db): wiring only."""
