"""Durable task queue on tables in the datastore's database."""
