"""Pure route matching: HTTP method + path → method plan, or why not."""
