"""`ruledesk test`: rule test case files, the runner, results and reports, coverage."""
