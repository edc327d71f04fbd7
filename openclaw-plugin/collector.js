// The plugin's logic, free of OpenClaw: hook events in, run_telemetry
// records out, batched to POST /v1/runs. index.js wires it to OpenClaw's
// hooks; the tests drive it directly.
//
// Attribution: each run's workspace holds .missionctl/pack.json (written
// by `missionctl openclaw sync`), naming the pack id and version, tenant,
// user, agent and task type. A run in a workspace without one is not a
// missionctl agent's and is not reported.
//
// Success: a run succeeded when the agent ended without error AND its last
// model call completed. OpenClaw reports agent_end.success = true even when
// every model call failed, so that flag alone is not trusted.
//
// Failing open: hooks only record and return; sending happens on a timer,
// never awaited by a turn. The buffer is bounded (oldest records dropped
// first, and counted); a registry that is down costs retries, not turns.

import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export const DEFAULTS = {
  batchSize: 100,
  flushIntervalMs: 2000,
  maxBuffer: 10000,
  timeoutMs: 5000,
};

/** Reads a workspace's sidecar, cached by modification time. */
export function sidecarReader() {
  const cache = new Map();
  return (workspaceDir) => {
    if (!workspaceDir) return undefined;
    const file = join(workspaceDir, ".missionctl", "pack.json");
    let mtime;
    try {
      mtime = statSync(file).mtimeMs;
    } catch {
      return undefined;
    }
    const hit = cache.get(file);
    if (hit && hit.mtime === mtime) return hit.value;
    try {
      const value = JSON.parse(readFileSync(file, "utf8"));
      if (typeof value.pack_id !== "string" || typeof value.pack_version !== "string") return undefined;
      cache.set(file, { mtime, value });
      return value;
    } catch {
      return undefined;
    }
  };
}

// Provider error codes worth keeping as run_telemetry.error_code when an
// error message names one (OpenAI's and Anthropic's wire codes).
const KNOWN_CODES = [
  "context_length_exceeded", "rate_limit_exceeded", "insufficient_quota", "invalid_api_key",
  "model_not_found", "server_error", "overloaded_error", "content_filter", "timeout",
];

/** A short error code from what OpenClaw reports: the failure kind, the
 * provider's error code, a code named in the message, the HTTP status,
 * else `fallback`.
 * OpenClaw's errorCategory is only the JavaScript error class ("Error"). */
export function deriveErrorCode({ failureKind, code, message, fallback }) {
  if (failureKind) return failureKind;
  if (typeof code === "string" && /^[A-Za-z0-9_.-]{1,64}$/.test(code)) return code;
  const text = String(message ?? "");
  const known = KNOWN_CODES.find((c) => text.includes(c));
  if (known) return known;
  const status = /\b([45]\d\d)\b/.exec(text);
  if (status) return `http_${status[1]}`;
  return fallback;
}

function cost(usage, model, prices) {
  const p = prices?.[model];
  if (!p || !usage) return 0;
  return ((usage.input ?? 0) * (p.input_per_mtok ?? 0) + (usage.output ?? 0) * (p.output_per_mtok ?? 0)) / 1e6;
}

export function createCollector(options) {
  const cfg = { ...DEFAULTS, ...options.config };
  const now = options.now ?? (() => Date.now());
  const post = options.post;
  const readSidecar = options.readSidecar ?? sidecarReader();
  const log = options.log ?? (() => {});
  const runs = new Map();
  const buffer = [];
  const stats = { recorded: 0, sent: 0, dropped: 0, unattributed: 0, failures: 0 };
  let sending = false;
  let backoffUntil = 0;
  let failures = 0;

  const run = (runId) => {
    let r = runs.get(runId);
    if (!r) {
      r = { start: now(), calls: 0, errors: 0, lastOutcome: undefined, errorCode: undefined, usage: { input: 0, output: 0 }, model: undefined, costUsd: 0 };
      runs.set(runId, r);
      // A run that never ends must not hold memory forever.
      if (runs.size > cfg.maxBuffer) runs.delete(runs.keys().next().value);
    }
    return r;
  };
  const remember = (r, ctx) => {
    if (ctx?.agentId) r.agentId = ctx.agentId;
    if (ctx?.workspaceDir) r.workspaceDir = ctx.workspaceDir;
    if (ctx?.sessionKey) r.sessionKey = ctx.sessionKey;
  };

  function push(record) {
    buffer.push(record);
    stats.recorded++;
    while (buffer.length > cfg.maxBuffer) {
      buffer.shift();
      stats.dropped++;
    }
  }

  const handlers = {
    llm_input(event, ctx) {
      if (!event?.runId) return;
      remember(run(event.runId), ctx);
    },
    model_call_ended(event, ctx) {
      if (!event?.runId) return;
      const r = run(event.runId);
      remember(r, ctx);
      r.calls++;
      r.lastOutcome = event.outcome;
      if (event.outcome === "error") {
        r.errors++;
        r.failureKind = event.failureKind;
      }
    },
    llm_output(event, ctx) {
      if (!event?.runId) return;
      const r = run(event.runId);
      remember(r, ctx);
      r.model = event.model ?? r.model;
      const u = event.usage ?? {};
      r.usage.input += u.input ?? 0;
      r.usage.output += u.output ?? 0;
      r.costUsd += cost(u, event.model, cfg.prices);
    },
    agent_end(event, ctx) {
      const runId = event?.runId ?? ctx?.runId;
      if (!runId) return;
      const r = run(runId);
      remember(r, ctx);
      runs.delete(runId);
      const side = readSidecar(r.workspaceDir);
      if (!side) {
        stats.unattributed++;
        return;
      }
      // The turn's last assistant message: OpenClaw records a failed model
      // call there (stopReason "error", the provider's errorCode and message).
      const last = Array.isArray(event?.messages)
        ? [...event.messages].reverse().find((m) => m?.role === "assistant")
        : undefined;
      const lastFailed = last?.stopReason === "error";
      const modelOk = r.calls > 0 && r.lastOutcome === "completed" && !lastFailed;
      const success = Boolean(event?.success) && modelOk;
      let errorCode = null;
      if (!success) {
        const fallback = r.calls === 0 ? "no_model_call" : !modelOk ? "model_error" : "agent_error";
        errorCode = deriveErrorCode({
          failureKind: r.lastOutcome !== "completed" ? r.failureKind : undefined,
          code: lastFailed ? last.errorCode : undefined,
          message: [lastFailed ? last.errorMessage : "", event?.error ?? ""].join(" "),
          fallback,
        });
      }
      push({
        run_id: String(runId),
        tenant_id: side.tenant_id ?? "",
        // The sidecar's user for a user-bound agent; else whoever the
        // channel says sent the turn; else the agent itself.
        user_id: side.user_id || ctx?.senderId || r.agentId || side.agent_id || "unknown",
        agent_id: r.agentId ?? side.agent_id ?? "",
        pack_id: side.pack_id,
        pack_version: side.pack_version,
        task_type: side.task_type ?? side.domain ?? "",
        latency_ms: typeof event?.durationMs === "number" ? event.durationMs : now() - r.start,
        cost_usd: r.costUsd,
        success_bool: success,
        error_code: errorCode,
        created_at: new Date(now()).toISOString(),
      });
      if (buffer.length >= cfg.batchSize) queueMicrotask(() => void flush());
    },
  };

  /** Send what is buffered, a batch at a time. Never throws. */
  async function flush() {
    if (sending || buffer.length === 0 || now() < backoffUntil) return;
    sending = true;
    try {
      while (buffer.length > 0) {
        const batch = buffer.splice(0, cfg.batchSize);
        let outcome;
        try {
          outcome = await post(batch);
        } catch (e) {
          outcome = { retry: true, error: String(e?.message ?? e) };
        }
        if (outcome.retry) {
          // Back to the front, still bounded; try again later.
          buffer.unshift(...batch);
          while (buffer.length > cfg.maxBuffer) {
            buffer.pop();
            stats.dropped++;
          }
          failures++;
          stats.failures++;
          backoffUntil = now() + Math.min(30000, 500 * 2 ** Math.min(failures, 6));
          log(`missionctl-telemetry: ${outcome.error}; ${buffer.length} records kept for retry`);
          return;
        }
        failures = 0;
        stats.sent += batch.length;
        if (outcome.error) log(`missionctl-telemetry: ${outcome.error}`);
      }
    } finally {
      sending = false;
    }
  }

  return { handlers, flush, buffer, stats, runs };
}

/** POST a batch to `${registryUrl}/v1/runs` with fetch. */
export function httpPoster({ registryUrl, token, timeoutMs = DEFAULTS.timeoutMs, fetchImpl = fetch }) {
  const url = `${registryUrl.replace(/\/+$/, "")}/v1/runs`;
  return async (batch) => {
    let resp;
    try {
      resp = await fetchImpl(url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify(batch),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      return { retry: true, error: `the registry is unreachable (${e?.cause?.code ?? e?.name ?? "error"})` };
    }
    const text = await resp.text().catch(() => "");
    if (resp.status === 429 || resp.status >= 500) {
      return { retry: true, error: `the registry answered ${resp.status}` };
    }
    if (!resp.ok) {
      // A refused batch (bad token, other tenant) will not succeed later.
      return { retry: false, error: `the registry refused ${batch.length} records: ${resp.status} ${text.slice(0, 200)}` };
    }
    return { retry: false };
  };
}
