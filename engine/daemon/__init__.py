"""The ruledesk daemon: hot reload of the rules, and the long-running service around the engine."""
