"""One module per `splitbrain` subcommand; each exposes a click command named `command`.

A command returns its exit code (splitbrain.exitcodes) and raises splitbrain.cli.UserError (or
HistoryError) for user mistakes.
"""
