from partner_transfer.cli import main

raise SystemExit(main())
