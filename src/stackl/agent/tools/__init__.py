"""Tools an agent runs: ansible, terraform, packer, shell."""
