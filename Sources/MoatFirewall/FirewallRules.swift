// Placeholder: the firewall generator lands here (see the task for `moat firewall`).
