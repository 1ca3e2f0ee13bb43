from learned_opt.cli import main

raise SystemExit(main())
