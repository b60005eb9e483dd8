//! Front ends: thin translations between a way of asking (the clap
//! command line, MCP tool calls) and the application layer's operations.

pub(crate) mod cli;
pub(crate) mod mcp;
pub(crate) mod out;
