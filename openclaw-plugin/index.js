// OpenClaw entry point: wires the collector to OpenClaw's typed hooks.
// Plain JavaScript, no build step, no dependencies.

import { readFileSync } from "node:fs";
import { createCollector, httpPoster, DEFAULTS } from "./collector.js";

export default {
  id: "missionctl-telemetry",
  name: "missionctl telemetry",
  description: "run_telemetry records for missionctl, attributed to the workspace's pack version.",
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
    const collector = createCollector({
      config,
      post: httpPoster({ registryUrl: config.registryUrl, token, timeoutMs: config.timeoutMs }),
      log: warn,
    });
    for (const [hook, fn] of Object.entries(collector.handlers)) {
      // Observation only: never throw into a turn.
      api.on(hook, (event, ctx) => {
        try {
          fn(event, ctx);
        } catch (e) {
          warn(`missionctl-telemetry: ${hook}: ${e?.message ?? e}`);
        }
      });
    }
    const timer = setInterval(() => void collector.flush(), config.flushIntervalMs);
    timer.unref?.();
    api.on("gateway_stop", async () => {
      clearInterval(timer);
      await collector.flush();
    });
  },
};
