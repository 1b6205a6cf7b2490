from mcp_tornado.cli import main

raise SystemExit(main())
