// fauxqs's SQS on loopback, without a line per call: its own cli.js listens on every interface
// and logs each request, which costs the bench's 2 cores more than the calls themselves.
// Usage: node bench/fauxqs/serve.mjs PORT
import { buildApp } from "fauxqs";

const app = buildApp({ logger: false, defaultRegion: process.env.AWS_REGION });
await app.listen({ port: Number(process.argv[2]), host: "127.0.0.1" });
