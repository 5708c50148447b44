from responder.cli.main import main

raise SystemExit(main())
