"""What the platform's services must agree on: message contracts, settings, AWS clients, signing."""
