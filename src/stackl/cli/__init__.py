"""REST-client commands of the stackl CLI, with the STACKL 0.5 verb groups."""
