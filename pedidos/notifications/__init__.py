"""Customer e-mails: one Spanish template per state, rendered to HTML and plain text."""
