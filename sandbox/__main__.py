"""``python -m sandbox``: run the Whapi and OpenAI fakes as a separate process."""

from sandbox.run import main

raise SystemExit(main())
