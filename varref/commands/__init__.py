"""Sub-commands of the ``varref`` CLI. Each module defines NAME, HELP, add_arguments(), run()."""

from varref.commands import (
    box,
    convert,
    demo,
    info,
    perturb,
    refine,
    restraints_report,
    simulate_map,
    validate,
)

COMMANDS = (demo, refine, simulate_map, perturb, info, convert, restraints_report, box, validate)
