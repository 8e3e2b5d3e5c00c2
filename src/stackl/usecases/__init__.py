"""The application layer: every operation STACKL offers, written against ports."""
