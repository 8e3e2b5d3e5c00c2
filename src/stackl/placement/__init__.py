"""Pure placement engine: decides where each service of an application may run."""
