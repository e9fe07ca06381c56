/**
 * Versions that travel in the handshake. The protocol number changes whenever a message
 * changes shape; client and agent ship together, so an exact match is required.
 */
export const PROTOCOL_VERSION = 1;
export const PACKAGE_VERSION = "0.1.0";
export const AGENT_MAGIC = "cws-agent";
