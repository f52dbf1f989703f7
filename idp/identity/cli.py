"""Identity commands (seed-demo)."""

COMMANDS: list = []
