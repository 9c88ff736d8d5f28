"""Sub-commands of the ``varref`` CLI. Each module defines NAME, HELP, add_arguments(), run()."""

from varref.commands import box, convert, demo, info, restraints_report

COMMANDS = (demo, info, convert, restraints_report, box)
