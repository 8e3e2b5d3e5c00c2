"""DocumentStore port and its adapters; owns the one database schema."""
