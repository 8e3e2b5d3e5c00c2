"""Where an agent runs a tool: local, docker, kubernetes, mock."""
