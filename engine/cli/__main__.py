"""`python -m ruledesk.engine.cli`: the ruledesk command line."""

from ruledesk.engine.cli import main

main()
