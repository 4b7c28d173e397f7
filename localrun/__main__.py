import sys

try:
    from localrun.cli import main
except ImportError as error:  # e.g. the wrong moto (localaws.IncompatibleMotoError)
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(2)

sys.exit(main())
