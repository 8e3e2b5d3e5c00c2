"""STACKL 0.5 compatible routes: same paths, bodies and operationIds."""
