// tsclient.mjs: a tiny MCP client built on the official TypeScript SDK.
// Usage: node tsclient.mjs <url> <api-key> <tool> <arguments-json> <session>
// It connects over Streamable HTTP with an X-API-Key header, lists the
// tools and calls <tool>, both with _meta {"haldir/session": <session>} and prints
// one JSON line: {"protocolVersion", "tools", "result"}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, apiKey, tool, args, session] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { "X-API-Key": apiKey } },
});
const client = new Client({ name: "haldir-ts-test", version: "1.0.0" });
await client.connect(transport);
const listed = await client.listTools({ _meta: { "haldir/session": session } });
const result = await client.callTool({
  name: tool,
  arguments: JSON.parse(args),
  _meta: { "haldir/session": session },
});
console.log(JSON.stringify({
  protocolVersion: transport.protocolVersion ?? null,
  tools: listed.tools.map((t) => t.name),
  result,
}));
await client.close();
