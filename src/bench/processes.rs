//! `herald bench fanout --consumers N`: the roles as processes of this same binary — one `herald
//! api`, one `herald scheduler`, N `herald consumer`s — on the run's places on the servers, as a
//! deployment runs them; and what the benchmark reads of every process from `/proc` meanwhile:
//! each role's resident memory over the send and its peak (`VmRSS`, `VmHWM`), its CPU time, and
//! the whole machine's CPU by process, so a saturation is seen where it is, not guessed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::config::ServerUrls;

/// How long a role may take to come up on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(120);
/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, 100 per second on Linux's ABI.
const TICKS_PER_SECOND: f64 = 100.0;
/// Processes of the machine a report lists, by CPU time over the send.
const TOP: usize = 10;

/// One role's process, logging into the run's data dir; killed and reaped when dropped.
struct Role {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Role {
    fn start(
        exe: &Path,
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&'static str, String)],
        secret: &str,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(exe)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("HERALD_DATA_DIR", dir.join(name))
            .env("HERALD_SECRET", secret)
            .env("RUST_LOG", "warn,herald=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {} {}", exe.display(), args.join(" ")))?;
        Ok(Self { name: name.to_string(), child, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first line of its log containing `what`, once written; an error with the log's end when
    /// the process ends first or `PATIENCE` passes.
    async fn until_logged(&mut self, what: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(what)) {
                return Ok(line.to_string());
            }
            if !matches!(self.child.try_wait(), Ok(None)) || Instant::now() > deadline {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
                bail!("{} never logged {what:?}:\n{}", self.name, tail.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        // The run is over (or failed): nothing in hand needs finishing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The roles of one run, up.
pub struct Deployment {
    roles: Vec<Role>,
    pub api: SocketAddr,
}

impl Deployment {
    /// Starts the scheduler, `consumers` consumers and the api on `servers`, each with a data dir
    /// of its own under `dir`, and waits until each says it runs.
    pub async fn start(dir: &Path, servers: &ServerUrls, secret: &str, consumers: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding this herald binary")?;
        let env = servers.env();
        let mut roles = vec![Role::start(&exe, dir, "scheduler", &["scheduler"], &env, secret)?];
        for n in 1..=consumers {
            roles.push(Role::start(&exe, dir, &format!("consumer-{n}"), &["consumer"], &env, secret)?);
        }
        roles.push(Role::start(&exe, dir, "api", &["api", "--listen", "127.0.0.1:0"], &env, secret)?);
        for role in &mut roles {
            let what = match role.name.as_str() {
                "api" => "herald api running on http://".to_string(),
                name => format!("herald {} running", name.split('-').next().unwrap_or(name)),
            };
            let line = role.until_logged(&what).await?;
            if role.name == "api" {
                let addr = line.split("running on http://").nth(1).and_then(|s| s.split_whitespace().next());
                let addr = addr.context("the api's address in its log")?.trim_end_matches('/').parse()?;
                return Ok(Self { api: addr, roles });
            }
        }
        bail!("no api role started")
    }

    /// Each role's name and pid.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.roles.iter().map(|r| (r.name.clone(), r.child.id())).collect()
    }
}

/// What one process of `/proc` says about itself.
fn status_kib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field))?.trim().split(' ').next()?.parse().ok()
}

/// Resident memory now (`VmRSS`), in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_kib(pid, "VmRSS:").map(|k| k / 1024.0)
}

/// Peak resident memory (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_kib(pid, "VmHWM:").map(|k| k / 1024.0)
}

/// User + system CPU ticks of a process, and its command name.
fn cpu_ticks(pid: &str) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may hold spaces; the fields after it are space-separated.
    let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state (field 3) … utime is field 14, stime field 15.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((name.to_string(), ticks))
}

/// What a process is, for a report: its command line (Redis puts its port there), shortened.
fn describe(pid: &str, name: &str) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .take(3)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let shown = match words.first() {
        Some(first) => {
            let exe = first.rsplit('/').next().unwrap_or(first);
            std::iter::once(exe.to_string()).chain(words[1..].iter().cloned()).collect::<Vec<_>>().join(" ")
        }
        None => name.to_string(),
    };
    shown.chars().take(60).collect()
}

/// The machine's CPU at one moment: every process's ticks, and the machine's busy and total
/// ticks (`/proc/stat`).
pub struct CpuSnapshot {
    at: Instant,
    processes: HashMap<String, (String, u64)>,
    busy: u64,
    total: u64,
}

impl CpuSnapshot {
    pub fn take() -> Self {
        let processes = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|pid| Some((pid.clone(), cpu_ticks(&pid)?)))
            .collect();
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .map(|l| l.split_whitespace().filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal …: idle and iowait are not busy.
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        Self { at: Instant::now(), processes, busy: total - idle, total }
    }

    /// The CPU spent from `self` to `later`, the processes that spent most first.
    pub fn until(&self, later: &CpuSnapshot) -> CpuUse {
        let seconds = later.at.duration_since(self.at).as_secs_f64();
        let mut top: Vec<ProcessCpu> = later
            .processes
            .iter()
            .filter_map(|(pid, (name, ticks))| {
                let before = self.processes.get(pid).filter(|(n, _)| n == name).map_or(0, |(_, t)| *t);
                let spent = ticks.saturating_sub(before) as f64 / TICKS_PER_SECOND;
                (spent > 0.0).then(|| ProcessCpu {
                    pid: pid.parse().unwrap_or(0),
                    process: describe(pid, name),
                    cpu_seconds: spent,
                    cores: spent / seconds.max(1e-9),
                })
            })
            .collect();
        top.sort_by(|a, b| b.cpu_seconds.total_cmp(&a.cpu_seconds));
        top.truncate(TOP);
        let total = (later.total - self.total).max(1) as f64;
        CpuUse { seconds, busy: (later.busy - self.busy) as f64 / total, top }
    }
}

/// The machine's CPU over a span: how busy all its cores were, and who used them.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub seconds: f64,
    /// Busy share of all cores (1 = every core busy the whole time).
    pub busy: f64,
    /// The processes that used most CPU, with their share in cores.
    pub top: Vec<ProcessCpu>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessCpu {
    pub pid: u32,
    pub process: String,
    pub cpu_seconds: f64,
    pub cores: f64,
}

/// One role's process over the send.
#[derive(Debug, Clone, Serialize)]
pub struct RoleUse {
    pub role: String,
    pub pid: u32,
    /// `VmHWM` once the send is done: the most it ever held, start-up included.
    pub peak_rss_mib: f64,
    /// `VmRSS` sampled from the `POST` to `sent`: (seconds, MiB).
    pub rss_mib: Vec<(f64, f64)>,
    pub cpu_seconds: f64,
}

impl RoleUse {
    /// The resident memory sampled last less the first: about 0 when memory stays flat.
    pub fn rss_growth_mib(&self) -> f64 {
        match (self.rss_mib.first(), self.rss_mib.last()) {
            (Some((_, first)), Some((_, last))) => last - first,
            _ => 0.0,
        }
    }

    pub fn rss_max_mib(&self) -> f64 {
        self.rss_mib.iter().map(|(_, m)| *m).fold(0.0, f64::max)
    }
}

/// The roles as processes over one send.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessesReport {
    pub consumers: usize,
    pub roles: Vec<RoleUse>,
}

/// Samples the roles' memory during a send.
pub struct RoleSampler {
    pids: Vec<(String, u32)>,
    series: Vec<Vec<(f64, f64)>>,
    started: Instant,
}

impl RoleSampler {
    pub fn new(pids: Vec<(String, u32)>) -> Self {
        let series = vec![Vec::new(); pids.len()];
        Self { pids, series, started: Instant::now() }
    }

    pub fn sample(&mut self) {
        let t = self.started.elapsed().as_secs_f64();
        for ((_, pid), series) in self.pids.iter().zip(&mut self.series) {
            if let Some(mib) = rss_mib(*pid) {
                series.push((t, mib));
            }
        }
    }

    /// What each role used, its CPU read from `cpu` (the machine's use over the same span).
    pub fn finish(self, consumers: usize, before: &CpuSnapshot, after: &CpuSnapshot) -> ProcessesReport {
        let roles = self
            .pids
            .into_iter()
            .zip(self.series)
            .map(|((role, pid), rss_mib)| {
                let key = pid.to_string();
                let ticks = |s: &CpuSnapshot| s.processes.get(&key).map_or(0, |(_, t)| *t);
                RoleUse {
                    role,
                    pid,
                    peak_rss_mib: peak_rss_mib(pid).unwrap_or(0.0),
                    rss_mib,
                    cpu_seconds: ticks(after).saturating_sub(ticks(before)) as f64 / TICKS_PER_SECOND,
                }
            })
            .collect();
        ProcessesReport { consumers, roles }
    }
}
