"""The pure domain: orders, money and the state machine. Imports nothing that does I/O."""
