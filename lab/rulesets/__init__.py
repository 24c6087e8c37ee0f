"""Rule set versions in the database: load, shadow, activate, replay (docs/judgement.md)."""
