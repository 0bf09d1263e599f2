"""The rule language past the syntax: checker and typer, code generation, compiler, runtime helpers, templates, Ruleset."""
