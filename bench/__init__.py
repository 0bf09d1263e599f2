"""ruledesk's benchmark: ``python bench/run.py [--quick] [--json PATH]`` (see bench/README.md)."""
