// Tests for the telemetry plugin, under Node's own test runner
// (`node --test test/`), against a real HTTP server on 127.0.0.1.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCollector, httpPoster } from "../collector.js";
import plugin from "../index.js";

function workspace(sidecar) {
  const dir = mkdtempSync(join(tmpdir(), "mc-ws-"));
  mkdirSync(join(dir, ".missionctl"));
  writeFileSync(join(dir, ".missionctl", "pack.json"), JSON.stringify(sidecar));
  return dir;
}

const SIDE = {
  pack_id: "hr-ops-pack", pack_version: "1.1.0+sha256.abcd1234", tenant_id: "acme", user_id: "alice",
  agent_id: "hr-alice", task_type: "hr-ops", domain: "hr-ops",
};

async function registry(handler) {
  const got = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      got.push({ auth: req.headers.authorization, rows: JSON.parse(body) });
      handler(req, res, got);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, got, close: () => new Promise((r) => server.close(r)) };
}

function turn(c, runId, ws, { outcomes = ["completed"], success = true, usage = { input: 1000, output: 200 }, error, last } = {}) {
  const ctx = { agentId: "hr-alice", workspaceDir: ws, sessionKey: "agent:hr-alice:main", runId };
  c.handlers.llm_input({ runId, sessionId: "s" }, ctx);
  for (const outcome of outcomes) {
    c.handlers.model_call_ended({ runId, callId: "c", provider: "demo", model: "demo-1", durationMs: 10, outcome, errorCategory: outcome === "error" ? "rate_limit" : undefined }, {});
  }
  c.handlers.llm_output({ runId, sessionId: "s", provider: "demo", model: "demo-1", assistantTexts: ["hi"], usage }, ctx);
  c.handlers.agent_end({ runId, messages: last ? [{ role: "user", content: "q" }, last] : [], success, durationMs: 321, error }, ctx);
}

test("a turn becomes one attributed run_telemetry record", async () => {
  const reg = await registry((req, res) => res.end('{"accepted":1}'));
  const c = createCollector({
    config: { batchSize: 10, prices: { "demo-1": { input_per_mtok: 0.15, output_per_mtok: 0.6 } } },
    post: httpPoster({ registryUrl: reg.url, token: "tok-1" }),
  });
  turn(c, "run-1", workspace(SIDE));
  await c.flush();
  await reg.close();
  assert.equal(reg.got.length, 1);
  assert.equal(reg.got[0].auth, "Bearer tok-1");
  const row = reg.got[0].rows[0];
  assert.deepEqual(Object.keys(row).sort(), [
    "agent_id", "cost_usd", "created_at", "error_code", "latency_ms", "pack_id", "pack_version",
    "run_id", "success_bool", "task_type", "tenant_id", "user_id",
  ]);
  assert.equal(row.run_id, "run-1");
  assert.equal(row.pack_version, SIDE.pack_version);
  assert.equal(row.tenant_id, "acme");
  assert.equal(row.user_id, "alice");
  assert.equal(row.task_type, "hr-ops");
  assert.equal(row.latency_ms, 321);
  assert.equal(row.success_bool, true);
  assert.equal(row.error_code, null);
  assert.ok(Math.abs(row.cost_usd - (1000 * 0.15 + 200 * 0.6) / 1e6) < 1e-12);
});

test("success comes from the model calls, not agent_end.success alone", () => {
  const sent = [];
  const c = createCollector({ config: { batchSize: 1000 }, post: async (b) => (sent.push(...b), { retry: false }) });
  const ws = workspace(SIDE);
  // As OpenClaw 2026.9.6 reports a provider's 400: agent_end.success stays
  // true; the last assistant message carries the error.
  turn(c, "failed-calls", ws, {
    outcomes: ["error"],
    success: true,
    last: { role: "assistant", content: [], stopReason: "error", errorCode: "context_length_exceeded", errorMessage: "400 This model's maximum context length is 4500 tokens." },
  });
  turn(c, "error-message-only", ws, { outcomes: ["error", "error"], success: true, error: "provider said rate_limit_exceeded" });
  turn(c, "server-500", ws, { outcomes: ["error"], success: false, error: "upstream answered 503" });
  turn(c, "recovered", ws, { outcomes: ["error", "completed"], success: true });
  turn(c, "no-call", ws, { outcomes: [], success: true });
  turn(c, "agent-failed", ws, { outcomes: ["completed"], success: false });
  const by = Object.fromEntries(c.buffer.map((r) => [r.run_id, r]));
  assert.equal(by["failed-calls"].success_bool, false);
  assert.equal(by["failed-calls"].error_code, "context_length_exceeded");
  assert.equal(by["server-500"].error_code, "http_503");
  assert.equal(by["error-message-only"].error_code, "rate_limit_exceeded");
  assert.equal(by["recovered"].success_bool, true);
  assert.equal(by["no-call"].error_code, "no_model_call");
  assert.equal(by["agent-failed"].error_code, "agent_error");
});

test("a tenant-bound agent reports the sender, else itself, as the user", () => {
  const c = createCollector({ config: {}, post: async () => ({ retry: false }) });
  const ws = workspace({ ...SIDE, user_id: "" });
  c.handlers.llm_input({ runId: "s1" }, { agentId: "hr-desk", workspaceDir: ws });
  c.handlers.model_call_ended({ runId: "s1", outcome: "completed" }, {});
  c.handlers.agent_end({ runId: "s1", messages: [], success: true }, { agentId: "hr-desk", workspaceDir: ws, senderId: "+15550001" });
  turn(c, "s2", ws);
  assert.equal(c.buffer[0].user_id, "+15550001");
  assert.equal(c.buffer[1].user_id, "hr-alice");
});

test("a workspace without a sidecar is not reported", () => {
  const c = createCollector({ config: {}, post: async () => ({ retry: false }) });
  turn(c, "r", mkdtempSync(join(tmpdir(), "mc-bare-")));
  assert.equal(c.buffer.length, 0);
  assert.equal(c.stats.unattributed, 1);
});

test("a registry that is down never breaks a turn, and the buffer stays bounded", async () => {
  // A port nothing listens on: bind, note it, close.
  const s = createServer();
  await new Promise((r) => s.listen(0, "127.0.0.1", r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  let clock = 0;
  const c = createCollector({
    config: { batchSize: 5, maxBuffer: 20 },
    now: () => clock,
    post: httpPoster({ registryUrl: `http://127.0.0.1:${port}`, token: "t", timeoutMs: 500 }),
  });
  const ws = workspace(SIDE);
  for (let i = 0; i < 50; i++) turn(c, `r${i}`, ws); // hooks return synchronously
  await c.flush();
  assert.equal(c.buffer.length, 20);
  assert.equal(c.stats.dropped, 30);
  assert.equal(c.stats.failures, 1);
  // Kept records are the newest, and a later registry gets them.
  assert.equal(c.buffer[19].run_id, "r49");
  const reg = await registry((req, res) => res.end("{}"));
  const c2 = createCollector({ config: { batchSize: 5 }, post: httpPoster({ registryUrl: reg.url, token: "t" }) });
  c2.buffer.push(...c.buffer);
  await c2.flush();
  await reg.close();
  assert.equal(reg.got.flatMap((g) => g.rows).length, 20);
  assert.equal(reg.got.length, 4);
});

test("429 and 5xx are retried later; a refusal is not", async () => {
  let status = 503;
  const reg = await registry((req, res) => {
    res.statusCode = status;
    res.end('{"error":"x"}');
  });
  let clock = 0;
  const c = createCollector({ config: { batchSize: 10 }, now: () => clock, post: httpPoster({ registryUrl: reg.url, token: "t" }) });
  turn(c, "a", workspace(SIDE));
  await c.flush();
  assert.equal(c.buffer.length, 1);
  await c.flush(); // within backoff: no request
  assert.equal(reg.got.length, 1);
  clock += 60_000;
  status = 403;
  await c.flush();
  assert.equal(reg.got.length, 2);
  assert.equal(c.buffer.length, 0);
  await reg.close();
});

test("the OpenClaw entry registers observation hooks and fails open", () => {
  const hooks = {};
  const warnings = [];
  plugin.register({
    pluginConfig: { registryUrl: "http://127.0.0.1:9", token: "t", flushIntervalMs: 60000 },
    logger: { warn: (m) => warnings.push(m) },
    on: (name, fn) => (hooks[name] = fn),
  });
  for (const h of ["llm_input", "model_call_ended", "llm_output", "agent_end", "gateway_stop"]) {
    assert.equal(typeof hooks[h], "function", h);
  }
  // Malformed events do not throw into the turn.
  assert.doesNotThrow(() => hooks.agent_end(undefined, undefined));
  assert.doesNotThrow(() => hooks.model_call_ended(null, {}));
});
