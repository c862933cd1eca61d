"""Customer e-mails in Spanish: one HTML and one plain-text template, the wording per state."""
