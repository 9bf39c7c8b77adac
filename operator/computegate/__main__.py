from computegate.cli import main

raise SystemExit(main())
