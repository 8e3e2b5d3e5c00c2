"""PolicyEngine port and its adapters (embedded Rego, static fake)."""
