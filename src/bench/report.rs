//! What `herald bench fanout` leaves behind: the runs as JSON, a Markdown summary, and an SVG chart
//! (deliveries and cities done over time with the poll latency beside them; each city's completion
//! time by its size) that a person looks at rather than reads. Runs with the roles as processes
//! (`--consumers`) also get the scale-out table: deliveries/s by consumer processes, each role's
//! memory and CPU, and who used the machine's CPU.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::json;

use super::fanout::{FanoutReport, Mode};

/// The machine, as a report names it.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).and_then(|l| l.split(':').nth(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{} core(s), {}", cores, model.map_or("unknown CPU", str::trim))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The run whose end-to-end time is the median one.
pub fn median_run<'a>(runs: &[&'a FanoutReport]) -> &'a FanoutReport {
    let m = median(runs.iter().map(|r| r.send_seconds).collect());
    runs.iter().find(|r| r.send_seconds == m).expect("a median run")
}

/// The runs by consumer processes (`None`: the roles in-process), in the order first run.
fn by_consumers(runs: &[FanoutReport]) -> Vec<(Option<usize>, Vec<&FanoutReport>)> {
    let mut groups: Vec<(Option<usize>, Vec<&FanoutReport>)> = Vec::new();
    for r in runs {
        match groups.iter_mut().find(|(c, _)| *c == r.consumers()) {
            Some((_, group)) => group.push(r),
            None => groups.push((r.consumers(), vec![r])),
        }
    }
    groups
}

/// Writes `fanout-<stamp>.json`, `fanout-<stamp>.md` and `fanout-latest.{md,svg}` into `dir`
/// (`fanout-distributed-…` for the distributed mode); returns the Markdown.
pub fn write(dir: &Path, runs: &[FanoutReport]) -> anyhow::Result<(String, Vec<PathBuf>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let markdown = markdown(runs, &stamp);
    let json = serde_json::to_string_pretty(&json!({"when": stamp, "machine": machine(), "runs": runs}))?;
    // The chart shows the median run of the last group (the most consumer processes).
    let groups = by_consumers(runs);
    let svg = svg(median_run(&groups.last().expect("at least one run").1));
    let name = match (runs[0].mode, runs[0].consumers()) {
        (Mode::Embedded, _) => "fanout".to_string(),
        (Mode::Distributed, None) => "fanout-distributed".to_string(),
        (Mode::Distributed, Some(_)) => format!("scale-{}", runs[0].inbox),
    };
    let files = [
        (format!("{name}-{stamp}.json"), json),
        (format!("{name}-{stamp}.md"), markdown.clone()),
        (format!("{name}-latest.md"), markdown.clone()),
        (format!("{name}-latest.svg"), svg),
    ];
    Ok((markdown, write_files(dir, files)?))
}

fn markdown(runs: &[FanoutReport], stamp: &str) -> String {
    let first = &runs[0];
    let groups = by_consumers(runs);
    let m = median_run(&groups.last().expect("at least one run").1);
    let mut md = String::new();
    let mode = match first.mode {
        Mode::Embedded => "embedded: every port in the data dir; raw limit = grouped SQLite commits",
        Mode::Distributed => {
            "distributed: MariaDB, Redis, RocketMQ, search server; raw limit = pipelined Redis ZADD, no Lua"
        }
    };
    let _ = writeln!(md, "# Fan-out: {} riders, {} cities (Zipf), {stamp}\n", first.receivers, first.cities);
    let content = match first.content {
        super::Content::Plain => "plain (one title and body for everyone)",
        super::Content::Personal => {
            "personal (a variant for group vip, an English translation, a placeholder, an image and a button; \
             one reader lookup per read)"
        }
    };
    let _ = writeln!(md, "Mode {mode}. Inbox store: {}. Content: {content}.\n", first.inbox);
    // A debug build measures something else entirely: say which one ran.
    let build = if cfg!(debug_assertions) { "a debug build (unoptimized)" } else { "a release build" };
    let _ = writeln!(md, "Machine: {}. Measured with {build}.\n", machine());
    let _ = writeln!(
        md,
        "| run | roles | load (CSV import) | POST | POST → sent | deliveries/s | raw limit | Herald ÷ raw | polls/s idle → during | poll p50 / p99 / p999 during | peak RSS (bench process) | load average at POST |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (i, r) in runs.iter().enumerate() {
        let per_s = |p: &Option<super::polls::PollPhase>| {
            p.as_ref().map_or("—".to_string(), |p| format!("{:.0}", p.per_second))
        };
        let during = r
            .polls_during
            .as_ref()
            .map_or("—".to_string(), |p| format!("{:.1} / {:.1} / {:.1} ms", p.p50_ms, p.p99_ms, p.p999_ms));
        let roles = r.consumers().map_or("in-process".to_string(), |n| format!("api + scheduler + {n} consumer(s)"));
        let _ = writeln!(
            md,
            "| {} | {roles} | {:.2} s | {:.1} ms | {:.2} s | {:.0} | {} | {} | {} → {} | {} | {:.0} MiB | {} |",
            i + 1,
            r.load_seconds,
            r.post_ms,
            r.send_seconds,
            r.deliveries_per_second(),
            r.raw_seconds.map_or("—".to_string(), |s| format!("{s:.2} s")),
            r.times_raw().map_or("—".to_string(), |x| format!("{x:.1}×")),
            per_s(&r.polls_idle),
            per_s(&r.polls_during),
            during,
            r.peak_rss_mib,
            r.load_average
        );
    }
    for (consumers, group) in &groups {
        let g = median_run(group);
        let raw = g.times_raw().map_or(String::new(), |x| format!(", {x:.1}× the raw limit"));
        let roles = consumers.map_or(String::new(), |n| format!(" with {n} consumer process(es)"));
        let _ = writeln!(
            md,
            "\nMedian of {}{roles}: **{:.2} s** POST → sent ({:.0} deliveries/s){raw}.",
            group.len(),
            g.send_seconds,
            g.deliveries_per_second()
        );
    }
    if first.consumers().is_some() {
        scale_table(&mut md, &groups);
    }
    cpu_table(&mut md, m);
    if let Some(bytes) = m.redis_bytes_per_receiver {
        let _ =
            writeln!(md, "Redis `used_memory` grew by {bytes:.0} B per receiver during the send (a shared server).");
    }
    if let Some(bytes) = m.redis_bytes_per_entry {
        let _ = writeln!(
            md,
            "A second broadcast to the same riders (untimed) grew it by {bytes:.0} B per receiver: one more inbox entry."
        );
    }
    if let Some(peer) = &m.peer {
        let _ = writeln!(
            md,
            "Peer naive-mysql (one InnoDB row per receiver, 500-row `INSERT`s), same run: {:.2} s = {:.0} rows/s; \
             Herald takes {:.2}× its time.",
            peer.seconds,
            peer.rows_per_second(m.receivers),
            m.times_peer().unwrap_or_default()
        );
    }
    let mut by_time = m.cities_done.clone();
    by_time.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let slowest: Vec<String> =
        by_time.iter().take(5).map(|c| format!("{} ({} riders) {:.2} s", c.city, c.receivers, c.seconds)).collect();
    let _ = writeln!(md, "Slowest cities of the median run: {}.", slowest.join(", "));
    md
}

/// Scales a value from `[lo, hi]` onto `[a, b]`.
fn scale(v: f64, (lo, hi): (f64, f64), (a, b): (f64, f64)) -> f64 {
    if hi <= lo { a } else { a + (v - lo) / (hi - lo) * (b - a) }
}

fn polyline(points: &[(f64, f64)], color: &str) -> String {
    let coords: Vec<String> = points.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    format!(r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, coords.join(" "))
}

/// Two panels: deliveries and cities done (% of all) over time, with the poll p99 beside them on
/// its own axis; then each city's completion time against its size.
fn svg(r: &FanoutReport) -> String {
    let (w, h, left, right) = (900.0, 640.0, 70.0, 830.0);
    let (top1, bottom1, top2, bottom2) = (40.0, 300.0, 380.0, 600.0);
    let t_max = r.send_seconds.max(0.001);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{left}" y="22" font-size="15">{} riders, {} cities: POST → sent in {:.2} s{}</text>"#,
        r.receivers,
        r.cities,
        r.send_seconds,
        r.raw_seconds
            .map_or(String::new(), |raw| format!(" ({:.1}× the raw limit of {raw:.2} s)", r.send_seconds / raw))
    );
    for (top, bottom) in [(top1, bottom1), (top2, bottom2)] {
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            right - left,
            bottom - top
        );
    }
    // Panel 1: % delivered and % of cities done over time.
    let x = |t: f64| scale(t, (0.0, t_max), (left, right));
    let y1 = |pct: f64| scale(pct, (0.0, 100.0), (bottom1, top1));
    let delivered: Vec<(f64, f64)> =
        r.progress.iter().map(|p| (x(p.t), y1(100.0 * p.sent as f64 / r.receivers as f64))).collect();
    let cities: Vec<(f64, f64)> =
        r.progress.iter().map(|p| (x(p.t), y1(100.0 * p.cities_done as f64 / f64::from(r.cities)))).collect();
    s += &polyline(&delivered, "#1f77b4");
    s += &polyline(&cities, "#2ca02c");
    let _ = write!(s, r##"<text x="{}" y="{}" fill="#1f77b4">delivered %</text>"##, left + 8.0, top1 + 16.0);
    let _ = write!(s, r##"<text x="{}" y="{}" fill="#2ca02c">cities done %</text>"##, left + 8.0, top1 + 32.0);
    for pct in [0.0, 50.0, 100.0] {
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">{pct:.0}%</text>"#, left - 6.0, y1(pct) + 4.0);
    }
    for i in 0..=4 {
        let t = t_max * f64::from(i) / 4.0;
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{t:.1} s</text>"#, x(t), bottom1 + 16.0);
    }
    if let Some(polls) = &r.polls_during {
        let windows: Vec<_> = polls.windows.iter().filter(|w| w.polls > 0 && w.t <= t_max).collect();
        let p_max = windows.iter().map(|w| w.p99_ms).fold(1.0, f64::max);
        let y = |ms: f64| scale(ms, (0.0, p_max), (bottom1, top1));
        let points: Vec<(f64, f64)> = windows.iter().map(|w| (x(w.t + 0.125), y(w.p99_ms))).collect();
        s += &polyline(&points, "#d62728");
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" fill="#d62728">poll p99 per 250 ms (right axis; {:.0} polls/s, p99 {:.1} ms overall)</text>"##,
            left + 8.0,
            top1 + 48.0,
            polls.per_second,
            polls.p99_ms
        );
        for ms in [0.0, p_max / 2.0, p_max] {
            let _ = write!(s, r##"<text x="{}" y="{}" fill="#d62728">{ms:.1} ms</text>"##, right + 6.0, y(ms) + 4.0);
        }
    }
    // Panel 2: completion time of each city by its size.
    let n_max = r.cities_done.iter().map(|c| c.receivers).max().unwrap_or(1) as f64;
    let x2 = |n: f64| scale(n.ln_1p(), (0.0, n_max.ln_1p()), (left, right));
    let y2 = |t: f64| scale(t, (0.0, t_max), (bottom2, top2));
    for c in &r.cities_done {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="#9467bd"/>"##,
            x2(c.receivers as f64),
            y2(c.seconds)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{left}" y="{}">each city: when it was done (s) by its riders (log scale)</text>"#,
        top2 - 8.0
    );
    for n in [1.0, (n_max.sqrt()).round(), n_max] {
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{n:.0}</text>"#, x2(n), bottom2 + 16.0);
    }
    for t in [0.0, t_max] {
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">{t:.1} s</text>"#, left - 6.0, y2(t) + 4.0);
    }
    s += "</svg>\n";
    s
}

/// Writes each `(name, text)` into `dir`, answering the paths written.
pub(crate) fn write_files(
    dir: &std::path::Path,
    files: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Deliveries/s by consumer processes (medians), each role's memory over the send and its CPU.
fn scale_table(md: &mut String, groups: &[(Option<usize>, Vec<&FanoutReport>)]) {
    let base = groups.first().map(|(_, g)| median_run(g).deliveries_per_second()).unwrap_or(1.0);
    let _ = writeln!(md, "\n## Scale-out: the roles as processes (median run of each)\n");
    let _ = writeln!(
        md,
        "| consumers | runs | POST → sent | deliveries/s | × the first | machine busy | CPU s api / scheduler / consumers (each) | peak RSS api / scheduler / consumers (max) | RSS growth over the send, largest |"
    );
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (consumers, group) in groups {
        let g = median_run(group);
        let Some(p) = &g.processes else { continue };
        let role = |name: &str| p.roles.iter().find(|r| r.role == name);
        let consumer_roles: Vec<_> = p.roles.iter().filter(|r| r.role.starts_with("consumer")).collect();
        let cpu_each: Vec<String> = consumer_roles.iter().map(|r| format!("{:.1}", r.cpu_seconds)).collect();
        let peak_consumers = consumer_roles.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
        let growth = p
            .roles
            .iter()
            .max_by(|a, b| a.rss_growth_mib().total_cmp(&b.rss_growth_mib()))
            .map_or("—".to_string(), |r| format!("{:+.0} MiB ({})", r.rss_growth_mib(), r.role));
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} s | {:.0} | {:.2} | {:.0} % | {:.1} / {:.1} / {} | {:.0} / {:.0} / {:.0} MiB | {growth} |",
            consumers.unwrap_or(0),
            group.len(),
            g.send_seconds,
            g.deliveries_per_second(),
            g.deliveries_per_second() / base,
            100.0 * g.cpu.busy,
            role("api").map_or(0.0, |r| r.cpu_seconds),
            role("scheduler").map_or(0.0, |r| r.cpu_seconds),
            cpu_each.join(" + "),
            role("api").map_or(0.0, |r| r.peak_rss_mib),
            role("scheduler").map_or(0.0, |r| r.peak_rss_mib),
            peak_consumers
        );
    }
    let _ = writeln!(
        md,
        "\nPeak RSS is each process's `VmHWM` once the send is done; `VmRSS` is sampled every 100 ms over the send \
         (the JSON has each series)."
    );
}

/// Who used the machine's CPU from the `POST` to `sent` in one run.
fn cpu_table(md: &mut String, r: &FanoutReport) {
    let _ = writeln!(
        md,
        "\n## CPU over the send (median run{}): the machine {:.0} % busy over {:.1} s\n",
        r.consumers().map_or(String::new(), |n| format!(", {n} consumer process(es)")),
        100.0 * r.cpu.busy,
        r.cpu.seconds
    );
    let _ = writeln!(md, "| process | pid | CPU s | cores |");
    let _ = writeln!(md, "| --- | --- | --- | --- |");
    for p in &r.cpu.top {
        let _ = writeln!(md, "| `{}` | {} | {:.1} | {:.2} |", p.process, p.pid, p.cpu_seconds, p.cores);
    }
}
