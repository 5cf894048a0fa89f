from pgchaos.cli import main

raise SystemExit(main())
