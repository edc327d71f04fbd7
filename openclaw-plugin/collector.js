// The plugin's logic, free of OpenClaw: hook events in, run_telemetry
// records out, batched to POST /v1/runs; the pack's tool policy and the
// workspace's integrity checked at prompt-build time. index.js wires it to
// OpenClaw's hooks; the tests drive it directly.
//
// Attribution: each run's workspace holds .missionctl/pack.json (written
// by `missionctl openclaw sync`), naming the pack id and version, tenant,
// user, agent, task type, the digests of the files it wrote, the tool
// policy and the autonomy level. The sidecar is read when the turn's prompt
// is built (before_prompt_build / llm_input), so a turn is attributed to
// the version it ran on even if sync swaps the workspace before it ends.
// A run in a workspace without one is not a missionctl agent's and is not
// reported.
//
// One row per turn, final and whole. OpenClaw 2026.9.6 retries a failed
// model call within the same run: the whole attempt runs again (a new
// before_prompt_build, llm_input, model call, agent_end, llm_output), up to
// 8 model calls over about 90 s, under the same run id. No hook fires once
// at the very end. So: an attempt that succeeded ends the turn (reported
// once its llm_output, which follows agent_end, has arrived, or after
// `endGraceMs`); an attempt that failed is held for `settleMs` (longer than
// OpenClaw's longest gap between retries, 32 s) and reported as failed only
// if no new attempt started meanwhile, or at once after `maxAttempts`.
// The row's latency runs from the first attempt's prompt build to the last
// attempt's end; `attempts` says how many there were. The registry keeps
// the first row per run id, and this plugin sends exactly one.
//
// Success: an attempt succeeded when the agent ended without error AND its
// last model call completed. OpenClaw reports agent_end.success = true even
// when every model call failed, so that flag alone is not trusted.
//
// Drift: at prompt build the managed files' digests are compared with the
// sidecar's. A mismatch (a hand edit sync has not yet restored) marks the
// run `drifted` (error_code), and for autonomy A0-A2 the turn is refused
// before the model reads the prompt (before_agent_run); at A3, or with no
// autonomy declared, it runs and is reported as drifted.
//
// Tools: the pack's allow list narrows the tools submitted to the model,
// client tools included (before_prompt_build's toolsAllow; OpenClaw's own
// tools.allow covers only its own tools), and any call to a tool the pack's
// allow list, deny list or autonomy rules out is blocked (before_tool_call).
// With no allow list, a denied client tool is still declared to the model
// (its name cannot be known before the call), but every call to it is blocked.
//
// Failing open: hooks only record and return; sending happens on a timer,
// never awaited by a turn. The buffer is bounded (oldest records dropped
// first, and counted); a registry that is down costs retries, not turns.

import { createHash } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export const DEFAULTS = {
  batchSize: 100,
  flushIntervalMs: 2000,
  maxBuffer: 10000,
  timeoutMs: 5000,
  settleMs: 40000,
  endGraceMs: 1000,
  maxAttempts: 8,
  requireSidecar: false,
};

/** `run_telemetry.error_code` of a turn that ran on hand-edited files. */
export const DRIFTED = "drifted";

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

/**
 * Whether `name` is a path missionctl writes in a workspace (as the Rust
 * side's `is_managed_name`): a bootstrap file, or `skills/<skill>/<plain
 * relative path>`. A sidecar naming anything else was edited by hand.
 */
export function isManagedName(name) {
  if (["AGENTS.md", "SOUL.md", "IDENTITY.md"].includes(name)) return true;
  const m = /^skills\/([a-z0-9][a-z0-9-]{0,63})\/(.+)$/.exec(name);
  return !!m && m[2].split("/").every((c) => c !== "" && !c.startsWith(".") && !c.includes("\\") && !c.includes("\0"));
}

/** Managed files whose text no longer has the digest the sidecar records. */
export function driftedFiles(workspaceDir, side) {
  const out = [];
  for (const [name, digest] of Object.entries(side?.files ?? {})) {
    if (!isManagedName(name)) {
      out.push(name);
      continue;
    }
    let text;
    try {
      text = readFileSync(join(workspaceDir, name), "utf8");
    } catch {
      out.push(name);
      continue;
    }
    if (`sha256:${createHash("sha256").update(text, "utf8").digest("hex")}` !== digest) out.push(name);
  }
  return out;
}

// OpenClaw 2026.9.6's tool groups (docs/gateway/config-tools/tool-policy.md),
// for matching tool names the pack's deny list names by group.
const GROUPS = {
  "group:runtime": ["exec", "bash", "process", "code_execution"],
  "group:fs": ["read", "write", "edit", "apply_patch"],
  "group:sessions": ["sessions", "sessions_list", "sessions_history", "sessions_search", "conversations_list", "conversations_send", "conversations_turn", "sessions_send", "sessions_spawn", "sessions_yield", "subagents", "session_status", "suggest_task", "dismiss_task"],
  "group:memory": ["memory_search", "memory_get"],
  "group:web": ["web_search", "x_search", "web_fetch"],
  "group:ui": ["browser", "screen", "theme", "dashboard", "terminal", "portal", "canvas", "show_widget"],
  "group:automation": ["heartbeat_respond", "automations", "cron", "gateway", "plugins", "openclaw"],
  "group:messaging": ["message"],
  "group:nodes": ["nodes", "computer"],
  "group:agents": ["agents_list", "get_goal", "create_goal", "update_goal", "progress_card", "ask_user", "skill_workshop"],
  "group:media": ["view_image", "image_generate", "music_generate", "video_generate", "tts", "pdf"],
};

/** Whether tool `name` matches a policy entry: an id, a `*` glob or a group. */
export function matches(entry, name) {
  if (entry === name) return true;
  if (GROUPS[entry]) return GROUPS[entry].includes(name);
  if (entry.includes("*")) {
    const re = new RegExp(`^${entry.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
    return re.test(name);
  }
  return false;
}

/** Why the sidecar's policy rules tool `name` out, or undefined. */
export function toolRefusal(side, name) {
  const tools = side?.tools;
  if (!tools) return undefined;
  const who = `pack ${side.pack_id} ${side.pack_version}${side.autonomy ? ` (autonomy ${side.autonomy})` : ""}`;
  const denied = (tools.deny ?? []).find((d) => matches(d, name));
  if (denied) return `tool \`${name}\` is denied by ${who} (${denied})`;
  if (Array.isArray(tools.allow) && !tools.allow.some((a) => matches(a, name))) {
    return `tool \`${name}\` is not on the allow list of ${who}`;
  }
  return undefined;
}

/** The bootstrap files' texts (as the sidecar lists them), read now. */
function bootstrapTexts(workspaceDir, side) {
  const out = {};
  for (const name of Object.keys(side?.files ?? {})) {
    if (name.includes("/") || !isManagedName(name)) continue; // skills are not in the system prompt whole
    try {
      const text = readFileSync(join(workspaceDir, name), "utf8");
      if (text.trim()) out[name] = text;
    } catch {
      // Checked just before: a file gone since is drift the prompt will show.
    }
  }
  return out;
}

/** Whether a drifted turn is refused at this autonomy level. */
export function refusesOnDrift(side) {
  return ["A0", "A1", "A2"].includes(side?.autonomy);
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
  let cfg = { ...DEFAULTS, ...options.config };
  const now = options.now ?? (() => Date.now());
  const timers = options.timers ?? { set: (f, ms) => setTimeout(f, ms), clear: (t) => clearTimeout(t) };
  let post = options.post;
  const readSidecar = options.readSidecar ?? sidecarReader();
  const log = options.log ?? (() => {});
  const runs = new Map();
  const buffer = [];
  const stats = { recorded: 0, sent: 0, dropped: 0, unattributed: 0, failures: 0, blockedTools: 0, drifted: 0 };
  let sending = false;
  let backoffUntil = 0;
  let failures = 0;

  const run = (runId) => {
    let r = runs.get(runId);
    if (!r) {
      r = {
        runId, start: now(), attempts: 0, attemptOpen: false, calls: 0, lastOutcome: undefined, failureKind: undefined,
        usage: { input: 0, output: 0 }, model: undefined, costUsd: 0, pending: undefined, final: undefined,
      };
      runs.set(runId, r);
      // A run that never ends must not hold memory forever.
      if (runs.size > cfg.maxBuffer) {
        const [oldest] = runs.values();
        finish(oldest);
      }
    }
    return r;
  };
  const remember = (r, ctx) => {
    if (ctx?.agentId) r.agentId = ctx.agentId;
    if (ctx?.workspaceDir) r.workspaceDir = ctx.workspaceDir;
    if (ctx?.sessionKey) r.sessionKey = ctx.sessionKey;
    if (ctx?.senderId) r.senderId = ctx.senderId;
  };
  const cancelPending = (r) => {
    if (r.pending !== undefined) {
      timers.clear(r.pending);
      r.pending = undefined;
    }
  };

  /** A new attempt begins: capture the version and check the workspace
   * (first attempt only: the turn is attributed to what it started on). */
  function beginAttempt(r, ctx) {
    remember(r, ctx);
    cancelPending(r);
    r.final = undefined;
    if (r.attemptOpen) return;
    r.attemptOpen = true;
    if (r.side === undefined) {
      r.side = readSidecar(r.workspaceDir) ?? null;
      if (r.side) {
        const drift = driftedFiles(r.workspaceDir, r.side);
        if (drift.length === 0) r.verified = bootstrapTexts(r.workspaceDir, r.side);
        if (drift.length > 0) {
          r.drifted = drift;
          stats.drifted++;
          log(`missionctl-telemetry: run ${r.runId}: ${drift.join(", ")} differ from ${r.side.pack_id} ${r.side.pack_version} as missionctl wrote it (a hand edit); the run is reported as drifted${refusesOnDrift(r.side) ? " and refused" : ""}`);
        }
      }
    }
  }

  function push(record) {
    buffer.push(record);
    stats.recorded++;
    while (buffer.length > cfg.maxBuffer) {
      buffer.shift();
      stats.dropped++;
    }
  }

  /** Report the turn once, with its final attempt's outcome. */
  function finish(r) {
    cancelPending(r);
    if (!runs.has(r.runId)) return;
    runs.delete(r.runId);
    const side = r.side ?? readSidecar(r.workspaceDir);
    if (!side) {
      stats.unattributed++;
      return;
    }
    const f = r.final ?? { success: false, errorCode: r.calls === 0 ? "no_model_call" : "agent_error", at: now() };
    let success = f.success;
    let errorCode = f.errorCode;
    if (r.drifted) {
      success = false;
      errorCode = DRIFTED;
    }
    push({
      run_id: String(r.runId),
      tenant_id: side.tenant_id ?? "",
      // The sidecar's user for a user-bound agent; else whoever the
      // channel says sent the turn; else the agent itself.
      user_id: side.user_id || r.senderId || r.agentId || side.agent_id || "unknown",
      agent_id: r.agentId ?? side.agent_id ?? "",
      pack_id: side.pack_id,
      pack_version: side.pack_version,
      task_type: side.task_type ?? side.domain ?? "",
      latency_ms: Math.max(0, f.at - r.start),
      cost_usd: r.costUsd,
      success_bool: success,
      error_code: success ? null : errorCode,
      created_at: new Date(f.at).toISOString(),
      attempts: Math.max(1, r.attempts),
    });
    if (buffer.length >= cfg.batchSize) queueMicrotask(() => void flush());
  }

  const handlers = {
    before_prompt_build(event, ctx) {
      const runId = ctx?.runId ?? event?.runId;
      if (!runId) return undefined;
      const r = run(runId);
      beginAttempt(r, ctx);
      const allow = r.side?.tools?.allow;
      if (!Array.isArray(allow)) return undefined;
      // Narrow what is submitted to the model, client tools included: an
      // allow entry a deny entry covers (by id, glob or group) goes.
      const deny = r.side.tools.deny ?? [];
      return { toolsAllow: allow.filter((a) => !deny.some((d) => matches(d, a))) };
    },
    before_agent_run(event, ctx) {
      const runId = ctx?.runId ?? event?.runId;
      if (!runId) return undefined;
      const r = run(runId);
      beginAttempt(r, ctx);
      if (!r.side && cfg.requireSidecar) {
        r.refused = true;
        return {
          outcome: "block",
          reason: "missionctl: no .missionctl/pack.json in the agent's workspace",
          message: "This agent has no reviewed pack version in its workspace; the turn was refused. Try again in a moment.",
        };
      }
      if (r.drifted && refusesOnDrift(r.side)) {
        r.refused = true;
        return {
          outcome: "block",
          reason: `missionctl: ${r.drifted.join(", ")} edited by hand`,
          message: `This agent's instructions (${r.drifted.join(", ")}) differ from the reviewed version ${r.side.pack_version}; the turn was refused. Try again in a moment.`,
        };
      }
      return undefined;
    },
    llm_input(event, ctx) {
      const runId = event?.runId ?? ctx?.runId;
      if (!runId) return;
      const r = run(runId);
      beginAttempt(r, ctx);
      // The files were checked before OpenClaw read them; a hand edit in
      // between (and restored since) shows in what it actually sent.
      const sent = typeof event?.systemPrompt === "string" ? event.systemPrompt : undefined;
      if (sent && r.verified && !r.drifted) {
        const missing = Object.entries(r.verified)
          .filter(([, text]) => !sent.includes(text.trim()))
          .map(([name]) => name);
        if (missing.length > 0) {
          r.drifted = missing;
          stats.drifted++;
          log(`missionctl-telemetry: run ${r.runId}: the prompt OpenClaw built does not hold ${missing.join(", ")} as ${r.side.pack_id} ${r.side.pack_version} has it; the run is reported as drifted`);
        }
      }
    },
    model_call_ended(event, ctx) {
      if (!event?.runId) return;
      const r = run(event.runId);
      remember(r, ctx);
      r.calls++;
      r.lastOutcome = event.outcome;
      r.failureKind = event.outcome === "error" ? event.failureKind : undefined;
    },
    llm_output(event, ctx) {
      const runId = event?.runId ?? ctx?.runId;
      if (!runId || !runs.has(runId)) return;
      const r = run(runId);
      remember(r, ctx);
      r.model = event.model ?? r.model;
      const u = event.usage ?? {};
      r.usage.input += u.input ?? 0;
      r.usage.output += u.output ?? 0;
      r.costUsd += cost(u, event.model, cfg.prices);
      // OpenClaw sends llm_output after agent_end: a successful turn's
      // usage is in, so it is whole now.
      if (r.final?.success) finish(r);
    },
    before_tool_call(event, ctx) {
      const runId = ctx?.runId ?? event?.runId;
      const r = runId ? runs.get(runId) : undefined;
      const side = r?.side;
      if (!side || !event?.toolName) return undefined;
      const why = toolRefusal(side, event.toolName);
      if (!why) return undefined;
      stats.blockedTools++;
      log(`missionctl-telemetry: run ${runId}: blocked: ${why}`);
      return { block: true, blockReason: `missionctl: ${why}` };
    },
    agent_end(event, ctx) {
      const runId = event?.runId ?? ctx?.runId;
      if (!runId) return;
      const r = run(runId);
      remember(r, ctx);
      r.attempts++;
      r.attemptOpen = false;
      // The attempt's last assistant message: OpenClaw records a failed
      // model call there (stopReason "error", the provider's errorCode and message).
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
      r.final = { success, errorCode, at: now() };
      // The next attempt counts its own model calls.
      r.calls = 0;
      r.lastOutcome = undefined;
      cancelPending(r);
      if (success) {
        r.pending = timers.set(() => finish(r), cfg.endGraceMs);
      } else if (r.refused || r.attempts >= cfg.maxAttempts) {
        finish(r);
      } else {
        // OpenClaw may retry: report the failure only if no attempt follows.
        r.pending = timers.set(() => finish(r), cfg.settleMs);
      }
    },
  };

  /** Report every turn still open (at shutdown), with what is known. */
  function finishAll() {
    for (const r of [...runs.values()]) {
      if (r.final || r.attempts > 0) finish(r);
    }
  }

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

  /** New settings and poster (OpenClaw re-registers the plugin on every
   * config reload; turns in flight and unsent records are kept). */
  function reconfigure(config, newPost) {
    cfg = { ...DEFAULTS, ...config };
    post = newPost;
  }

  return { handlers, flush, finishAll, reconfigure, buffer, stats, runs };
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
