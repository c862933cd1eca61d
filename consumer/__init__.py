"""The consumer: walks every order through its states, e-mails and indexes each one."""
