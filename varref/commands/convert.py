"""Convert a model between PDB and mmCIF (format from the output suffix).

Reads one MODEL (``--model-index``) or, with ``--all-models``, every MODEL of the input;
alternative conformations are resolved as everywhere in varref (highest occupancy per residue
unless ``--altloc first``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from varref.atomic import check_outputs
from varref.commands.option_types import index
from varref.commands.options import add_overwrite_option, require
from varref.errors import InputError
from varref.model import read_model, read_models, write_ensemble, write_model

NAME = "convert"
HELP = "convert a model between PDB and mmCIF"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="input PDB or mmCIF")
    parser.add_argument("-o", "--output", help="output .pdb or .cif (required)")
    # deprecated: the output used to be the second positional argument
    parser.add_argument("old_output", nargs="?", metavar="OUTPUT", help=argparse.SUPPRESS)
    add_overwrite_option(parser)
    parser.add_argument("--model-index", type=index, default=0, help="which MODEL, 0-based (default 0)")
    parser.add_argument("--all-models", action="store_true", help="keep every MODEL of the input")
    parser.add_argument("--altloc", choices=("occupancy", "first"), default="occupancy",
                        help="conformer kept per residue (default: highest occupancy)")


def run(args: argparse.Namespace) -> int:
    if args.output and args.old_output:
        raise InputError("--output", "give the output once (-o OUTPUT)")
    args.output = args.output or args.old_output
    require(args, "output", "--output")
    check_outputs(((args.output, "--output"),), (args.model,), overwrite=args.overwrite)
    if Path(args.output).suffix.lower() not in (".cif", ".mmcif", ".pdb", ".ent"):
        raise InputError("--output", f"{args.output}: use a .cif or .pdb suffix")
    if args.all_models:
        models = read_models(args.model, altloc=args.altloc)
        sizes = sorted({m.n_atoms for m in models})
        if len(sizes) > 1:
            raise InputError(args.model, f"its models differ in atom count ({sizes}); "
                             "--all-models needs identical atoms in every MODEL")
        write_ensemble(models[0], [m.xyz for m in models], args.output)
        print(f"wrote {len(models)} model(s) of {models[0].n_atoms} atoms to {args.output}")
        return 0
    model = read_model(args.model, model_index=args.model_index, altloc=args.altloc)
    write_model(model, args.output)
    print(f"wrote {model.n_atoms} atoms to {args.output}")
    return 0
