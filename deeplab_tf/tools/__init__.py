"""Command-line tools (absl mains). Library code never reads FLAGS."""
