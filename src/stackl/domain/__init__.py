"""Pure domain model: documents, names, quantities, targets, revisions. No I/O, no framework."""
