"""mcp-tornado: many MCP servers behind one port, on Tornado."""

__version__ = "0.1.0"
