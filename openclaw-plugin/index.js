// OpenClaw entry point: wires the collector to OpenClaw's typed hooks.
// Plain JavaScript, no build step, no dependencies.

import { readFileSync } from "node:fs";
import { createCollector, httpPoster, DEFAULTS } from "./collector.js";

// OpenClaw calls register() again on every config reload (sync's fragment
// writes cause them). One collector and one timer per process: turns in
// flight and unsent records survive a reload, and no timer is left behind.
let active;

export default {
  id: "missionctl-telemetry",
  name: "missionctl telemetry",
  description: "run_telemetry records for missionctl, attributed to the workspace's pack version; the pack's tool policy and workspace integrity enforced at prompt build.",
  register(api) {
    const config = { ...DEFAULTS, ...(api.pluginConfig ?? {}) };
    const warn = (m) => (api.logger?.warn ? api.logger.warn(m) : console.warn(m));
    let token = config.token ?? "";
    if (config.tokenFile) {
      try {
        token = readFileSync(config.tokenFile, "utf8").trim();
      } catch (e) {
        warn(`missionctl-telemetry: cannot read tokenFile (${e.code ?? e.message}); runs will be refused by the registry`);
      }
    }
    if (!config.registryUrl) {
      warn("missionctl-telemetry: no registryUrl configured; not reporting runs");
      return;
    }
    const post = httpPoster({ registryUrl: config.registryUrl, token, timeoutMs: config.timeoutMs });
    if (active) {
      active.collector.reconfigure(config, post);
      clearInterval(active.timer);
    } else {
      active = { collector: createCollector({ config, post, log: warn }) };
    }
    const collector = active.collector;
    for (const [hook, fn] of Object.entries(collector.handlers)) {
      // Never throw into a turn: a failing handler is logged and changes nothing.
      api.on(hook, (event, ctx) => {
        try {
          return fn(event, ctx);
        } catch (e) {
          warn(`missionctl-telemetry: ${hook}: ${e?.message ?? e}`);
          return undefined;
        }
      });
    }
    active.timer = setInterval(() => void collector.flush(), config.flushIntervalMs);
    active.timer.unref?.();
    api.on("gateway_stop", async () => {
      clearInterval(active.timer);
      collector.finishAll();
      await collector.flush();
    });
  },
};
