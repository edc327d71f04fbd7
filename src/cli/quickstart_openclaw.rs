//! `missionctl quickstart --openclaw`: the loop with real OpenClaw agents.
//!
//! Real throughout: a git remote and a clone, `missionctl serve` (registry,
//! reconciler, canary controller) as its own process, `openclaw sync`
//! delivering packs into four agents' workspaces, one OpenClaw Gateway
//! serving them with the built-in demo model behind it (given a 4,500-token
//! context window, as a small model has) and missionctl's telemetry plugin
//! reporting every turn. The turns themselves are questions the narration
//! sends through the Gateway's chat endpoint, as an application would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use missionctl::model::Arm;
use missionctl::openclaw::{gateway, plugin, sync, workspace};

use super::quickstart::{QuickstartError, edit, git, path, say, step};

fn fail(what: &str) -> QuickstartError {
    QuickstartError::Step(what.to_string())
}

/// The version of hr-ops-pack a workspace holds, from its sidecar.
fn hr_version(ws: &Path) -> Option<String> {
    workspace::read_sidecar(ws)?
        .chain_version("hr-ops-pack")
        .map(str::to_string)
}

async fn wait_for<T>(
    what: &str,
    within: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Result<T, QuickstartError> {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if start.elapsed() > within {
            return Err(fail(&format!("timed out waiting for {what}")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The hr-ops rollout as `/v1/rollouts` shows it.
fn rate(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "n/a".into(), |r| format!("{:.0}%", r * 100.0))
}

async fn rollout(http: &reqwest::Client, reg: &str, admin: &str, version: &str) -> Option<Value> {
    let v: Value = http
        .get(format!("{reg}/v1/rollouts"))
        .bearer_auth(admin)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    v["rollouts"]
        .as_array()?
        .iter()
        .find(|r| {
            r["pack_id"] == "hr-ops-pack"
                && r["canary_version"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(version))
        })
        .cloned()
}

/// One question to an agent through the Gateway; true when it answered.
async fn ask(http: &reqwest::Client, gw: &gateway::Gateway, agent: &str, n: usize) -> bool {
    // The pack's tools as the application supplies them: OpenClaw refuses a
    // turn whose allow list matches no registered tool, and this Gateway has
    // no HRIS MCP server.
    let tools: Vec<Value> = ["hris__leave_balance", "hris__policy_search"]
        .iter()
        .map(|t| json!({"type": "function", "function": {"name": t, "description": t, "parameters": {"type": "object", "properties": {}}}}))
        .collect();
    http.post(format!("{}/v1/chat/completions", gw.url))
        .bearer_auth(&gw.token)
        .header(
            "x-openclaw-session-key",
            format!("agent:{agent}:quickstart:{n}"),
        )
        .json(
            &json!({"model": format!("openclaw/{agent}"), "tools": tools, "messages": [
            {"role": "user", "content": "How many days of annual leave do I have left?"}]}),
        )
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn token_entry(name: &str, role: &str, tenant: Option<&str>) -> (String, String) {
    let t = missionctl::registry::auth::generate();
    let entry = missionctl::registry::auth::entry(name, role, tenant, &t);
    (t, entry)
}

struct Child(tokio::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

pub async fn run(dir: Option<PathBuf>) -> Result<(), QuickstartError> {
    let install = gateway::find().map_err(|e| {
        fail(&format!(
            "quickstart --openclaw needs OpenClaw {}: {e}",
            gateway::OPENCLAW_VERSION
        ))
    })?;
    let dir = match dir {
        Some(d) => d,
        None => tempfile::Builder::new()
            .prefix("missionctl-openclaw-")
            .tempdir()
            .map_err(step("making a directory"))?
            .keep(),
    };
    std::fs::create_dir_all(&dir).map_err(step("making a directory"))?;
    let (seed, remote, work) = (dir.join("seed"), dir.join("fleet.git"), dir.join("work"));
    say(&format!(
        "missionctl quickstart --openclaw in {}\n",
        dir.display()
    ));
    say(
        "1. init: the example pack repository as a git remote and a clone; the HR domain's canary decides on 10 runs per arm",
    );
    missionctl::template::init(&seed, true).map_err(step("init"))?;
    git(&dir, &["clone", "-q", "--bare", path(&seed), path(&remote)])?;
    git(&dir, &["clone", "-q", path(&remote), path(&work)])?;
    let hr = work.join("packs/domains/hr-ops/pack.yaml");
    edit(&hr, "steps: [10, 50, 100]", "steps: [50, 100]")?;
    edit(&hr, "min_runs_per_arm: 150", "min_runs_per_arm: 10")?;
    edit(&hr, "version: 1.0.0", "version: 1.0.1")?;
    git(
        &work,
        &["commit", "-qam", "A quick canary for the quickstart"],
    )?;
    git(&work, &["push", "-q", "origin", "main"])?;

    // The registry: `missionctl serve` with an admin and a harness token.
    let (admin, admin_entry) = token_entry("quickstart-admin", "admin", None);
    let (harness, harness_entry) = token_entry("quickstart-agents", "harness", Some("acme"));
    let tokens = dir.join("tokens.yaml");
    std::fs::write(&tokens, format!("tokens:\n{admin_entry}{harness_entry}"))
        .map_err(step("tokens"))?;
    let token_file = dir.join("harness.token");
    std::fs::write(&token_file, &harness).map_err(step("token file"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(step("a free port"))?
        .port();
    let exe = std::env::current_exe().map_err(step("finding missionctl"))?;
    let db = format!("sqlite://{}", dir.join("state.db").display());
    let serve = Child(
        tokio::process::Command::new(&exe)
            .args(["serve", "--repo", path(&remote), "--db", &db, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--rollout-interval", "200ms", "--tokens", path(&tokens)])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log")).map_err(step("serve log"))?)
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .map_err(step("starting serve"))?,
    );
    // Stopped with the Gateway when quickstart is interrupted.
    if let Some(pid) = serve.0.id() {
        gateway::reaper::add(pid as i32);
    }
    let reg = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_for("the registry", Duration::from_secs(30), async || {
        let r = http.get(format!("{reg}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await?;
    // Read alongside serve, for the narration's counts.
    let store = missionctl::store::Store::connect(&db)
        .await
        .map_err(step("opening the state store"))?;
    say(&format!(
        "   missionctl serve: the registry at {reg}, reconciling {}",
        remote.display()
    ));

    // The model behind OpenClaw.
    let model = missionctl::eval::demo_model::start(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        missionctl::eval::demo_model::DemoConfig {
            context_window: Some(4500),
            ..Default::default()
        },
    )
    .await
    .map_err(step("the demo model"))?;

    // Four agents bound to acme's HR chain; the canary splits by agent.
    let mut agents: Vec<(String, Arm)> = Vec::new();
    for i in 0.. {
        let id = format!("hr-agent-{i}");
        let arm = missionctl::rollout::arm("hr-ops-pack", &format!("agent:{id}"), 50);
        if agents.iter().filter(|(_, a)| *a == arm).count() < 2 {
            agents.push((id, arm));
        }
        if agents.len() == 4 {
            break;
        }
    }
    let gw_dir = dir.join("gateway");
    let mut yaml = String::from("fragment: gateway/agents.json5\nmodel: demo/demo-1\nagents:\n");
    for (a, _) in &agents {
        yaml.push_str(&format!(
            "  - {{ id: {a}, domain: hr-ops, tenant: acme, user: {a}, workspace: workspaces/{a} }}\n"
        ));
    }
    let agents_file = dir.join("agents.yaml");
    std::fs::write(&agents_file, yaml).map_err(step("agents.yaml"))?;
    say(
        "\n2. openclaw sync: four OpenClaw agents bound to hr-ops/acme follow the registry's watch",
    );
    let opts = sync::SyncOptions {
        registry: reg.clone(),
        token: harness.clone(),
        agents: sync::load_agents(&agents_file).map_err(step("agents.yaml"))?,
        wait: Duration::from_secs(5),
        once: false,
        gateway_config: Some(gw_dir.join("openclaw.json")),
        refused_retry: sync::REFUSED_RETRY,
        // The Gateway starts after sync's first pass.
        gateway: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let syncer = tokio::spawn(sync::run(opts, tx));
    let printer = tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            say(&format!("   sync: {e}"));
        }
    });
    let ws = |a: &str| dir.join("workspaces").join(a);
    for (a, _) in &agents {
        wait_for(
            "sync delivering the champion",
            Duration::from_secs(30),
            async || workspace::read_sidecar(&ws(a)),
        )
        .await?;
    }
    wait_for("the agents fragment", Duration::from_secs(10), async || {
        gw_dir.join("agents.json5").is_file().then_some(())
    })
    .await?;

    say(
        "\n3. one OpenClaw Gateway: the agents fragment included, the demo model behind it, the telemetry plugin loaded",
    );
    let plugin_dir = dir.join("missionctl-telemetry");
    plugin::write(&plugin_dir).map_err(step("the plugin"))?;
    let config = gateway::config(
        gateway::provider("demo", &model.url(), &["demo-1"], "none"),
        "demo/demo-1",
        json!({"$include": "./agents.json5", "defaults": {"skipBootstrap": true}}),
        Some((
            &plugin_dir,
            json!({"registryUrl": reg, "tokenFile": token_file, "flushIntervalMs": 250, "batchSize": 8}),
        )),
    );
    let started = Instant::now();
    let mut gw = gateway::Gateway::start(&install, &gw_dir, config, Duration::from_secs(120))
        .await
        .map_err(step("the OpenClaw Gateway"))?;
    say(&format!(
        "   OpenClaw {} Gateway ready at {} in {:.0} s",
        gateway::OPENCLAW_VERSION,
        gw.url,
        started.elapsed().as_secs_f64()
    ));
    let result = async {
        let mut n = 0;
        let mut ok = 0;
        for _ in 0..3 {
            for (a, _) in &agents {
                n += 1;
                ok += usize::from(ask(&http, &gw, a, n).await);
            }
        }
        say(&format!("   {ok} of {n} turns answered"));
        let reported = wait_for("the plugin's reports", Duration::from_secs(30), async || {
            let r = store.count_runs().await.ok()?;
            (r >= ok as i64).then_some(r)
        })
        .await?;
        say(&format!("   {reported} runs reported by the plugin: one run_telemetry record per turn, with the version its prompt was built on"));

        say("\n4. a bad version merges: a long reference appendix that no longer fits the model's context (hr-ops-pack 1.1.0)");
        let procedures = work.join("packs/domains/hr-ops/prompts/procedures.md");
        let appendix: String = (1..=70)
            .map(|i| format!("- Reference note {i}: check the employee handbook chapter {i} and its annex before answering questions on this topic.\n"))
            .collect();
        let text = std::fs::read_to_string(&procedures).map_err(step("reading procedures.md"))?;
        std::fs::write(&procedures, format!("{text}\n## Reference notes\n\n{appendix}"))
            .map_err(step("writing procedures.md"))?;
        edit(&hr, "version: 1.0.1", "version: 1.1.0")?;
        git(&work, &["commit", "-qam", "Add the handbook reference notes"])?;
        git(&work, &["push", "-q", "origin", "main"])?;
        wait_for("the canary", Duration::from_secs(30), async || rollout(&http, &reg, &admin, "1.1.0").await).await?;
        let canary: Vec<&String> = agents.iter().filter(|(_, a)| *a == Arm::Canary).map(|(a, _)| a).collect();
        for a in &canary {
            wait_for("the canary reaching its agents", Duration::from_secs(30), async || {
                hr_version(&ws(a)).filter(|v| v == "1.1.0")
            })
            .await?;
        }
        say(&format!("   the canary (50%) reached {} of the 4 workspaces", canary.len()));

        say("\n5. turns on every agent; the canary's model calls fail, the plugin reports it, the controller rolls back");
        let mut round = 0;
        let rolled = loop {
            round += 1;
            let mut answered = 0;
            for (a, _) in &agents {
                n += 1;
                answered += usize::from(ask(&http, &gw, a, n).await);
            }
            say(&format!("   round {round}: {answered} of {} turns answered", agents.len()));
            if let Some(r) = rollout(&http, &reg, &admin, "1.1.0").await
                && r["state"] != "running"
            {
                break r;
            }
            if round > 30 {
                return Err(fail("the canary did not conclude"));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        say(&format!(
            "   rollout {}: {}",
            rolled["state"].as_str().unwrap_or("?"),
            rolled["detail"]["why"].as_str().unwrap_or("")
        ));
        say(&format!(
            "   runs reported during the canary: champion {} (success rate {}), canary {} (success rate {})",
            rolled["champion"]["runs"],
            rate(&rolled["champion"]["success_rate"]),
            rolled["canary"]["runs"],
            rate(&rolled["canary"]["success_rate"]),
        ));
        for a in &canary {
            wait_for("the champion back in the workspace", Duration::from_secs(30), async || {
                hr_version(&ws(a)).filter(|v| v == "1.0.1")
            })
            .await?;
        }
        say("   every workspace holds the champion (hr-ops-pack 1.0.1) again");
        // The registry pins the champion at once; the revert commit follows
        // (written and pushed by the controller), so wait for it to land.
        let head = wait_for("the revert commit on main", Duration::from_secs(30), async || {
            git(&remote, &["log", "-1", "--format=%h %s", "main"])
                .ok()
                .filter(|h| h.contains(" Roll back "))
        })
        .await?;
        say(&format!("   git agrees: main is now at `{head}`"));
        Ok::<(), QuickstartError>(())
    }
    .await;
    gw.shutdown().await;
    syncer.abort();
    let _ = printer.await;
    model.shutdown().await;
    result?;
    say(&format!(
        "\nDone. In {}: fleet.git, the workspaces, the Gateway's config and log, state.db.\nTry: missionctl status --all --db {db}",
        dir.display()
    ));
    say(&format!(
        "\nSee it in the fleet console: {}\n     then open the one-time sign-in link it prints.",
        super::quickstart::serve_command(&dir)
    ));
    Ok(())
}
