//! Herald's configuration: every setting from its flag, its `HERALD_*` variable or a TOML file
//! (`--config PATH` / `HERALD_CONFIG`), in that order of precedence, else its default; read and
//! checked once at start, so a bad value stops Herald with an error that names where it came from
//! (`HERALD_MAX_CONNECTIONS: not a number: "lots"`) instead of surfacing later.
//!
//! [`SETTINGS`] is the one list: the flags (`--help`), the variables, the file's keys and the table
//! in `docs/configuration.md` (a test renders it from this list) all come from it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Arg, ArgMatches, Command};
use herald_consumers::ConsumerConfig;
use herald_domain::{AppSchemes, InboxCap};
use herald_scheduler::SchedulerConfig;

use crate::auth::SecretSettings;
use crate::http::StreamLimits;
use crate::server::HttpLimits;

/// One setting, and everywhere it can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Its key in the TOML file; also its name on the command line (`--max-connections`).
    pub key: &'static str,
    pub env: &'static str,
    pub flag: Flag,
    /// Whether the TOML file may set it (secrets come from the environment or the data dir only).
    pub in_file: bool,
    /// The default, as written in the docs.
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Which commands take a setting as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Every command.
    Global,
    /// The commands that run roles: `serve`, `api`, `scheduler`, `consumer`.
    Run,
    /// No flag: the environment (or the file) only.
    None,
}

const fn setting(
    key: &'static str,
    env: &'static str,
    flag: Flag,
    in_file: bool,
    default: &'static str,
    meaning: &'static str,
) -> Setting {
    Setting { key, env, flag, in_file, default, meaning }
}

pub const CONFIG: Setting = setting(
    "config",
    "HERALD_CONFIG",
    Flag::Global,
    false,
    "none",
    "a TOML file of settings, keyed by the flags' names (`listen = \"0.0.0.0:8080\"`)",
);
pub const DATA_DIR: Setting = setting(
    "data-dir",
    "HERALD_DATA_DIR",
    Flag::Global,
    true,
    "`./herald-data`",
    "where the embedded parts keep their files, and the token secret when `HERALD_SECRET` is unset (a directory \
     Herald creates is `0700`, its files `0600`); `bench` makes its fresh runs inside it when one is set",
);
pub const LISTEN: Setting = setting(
    "listen",
    "HERALD_LISTEN",
    Flag::Run,
    true,
    "`127.0.0.1:8080`",
    "the address (`host:port`) the HTTP API listens on",
);
pub const OPS_ADDR: Setting = setting(
    "ops-addr",
    "HERALD_OPS_ADDR",
    Flag::Run,
    true,
    "unset (none; the api role serves them on `listen`)",
    "an address (`host:port`) of its own where any role serves `/metrics`, `/healthz` and `/readyz` for its \
     own backends: set it for `herald scheduler` and `herald consumer`, which serve nothing else; port 0 takes a \
     free port, printed at start (`ops on http://…`), so several consumers on one host never collide",
);
pub const MAX_CONNECTIONS: Setting = setting(
    "max-connections",
    "HERALD_MAX_CONNECTIONS",
    Flag::Run,
    true,
    "`10000`",
    "HTTP connections served at once (lowered to fit the open-file limit); more wait in the kernel's backlog",
);
pub const HEADER_TIMEOUT: Setting = setting(
    "header-timeout",
    "HERALD_HEADER_TIMEOUT",
    Flag::Run,
    true,
    "`10s`",
    "a connection that does not send a whole request's headers in this time (also while idle between requests) \
     is closed",
);
pub const REQUEST_TIMEOUT: Setting = setting(
    "request-timeout",
    "HERALD_REQUEST_TIMEOUT",
    Flag::Run,
    true,
    "`30s`",
    "a request not read and answered in this time gets `408 request_timeout`",
);
pub const CONSOLE_CONNECTIONS: Setting = setting(
    "console-connections",
    "HERALD_CONSOLE_CONNECTIONS",
    Flag::Run,
    true,
    "`1`",
    "SQL connections of the ops console's own (search, preview, notification pages): at most this many console \
     queries run at once, and none ever takes a connection the apps read with",
);
pub const CONSOLE_WAIT: Setting = setting(
    "console-wait",
    "HERALD_CONSOLE_WAIT",
    Flag::Run,
    true,
    "`10s`",
    "how long a console query waits for one of those connections before `503 console_busy`",
);
pub const CONSOLE_STATEMENT_TIMEOUT: Setting = setting(
    "console-statement-timeout",
    "HERALD_CONSOLE_STATEMENT_TIMEOUT",
    Flag::Run,
    true,
    "`5s`",
    "a console statement running longer is stopped: `503 console_query_timeout`",
);
pub const INBOX_CAP: Setting = setting(
    "inbox-cap",
    "HERALD_INBOX_CAP",
    Flag::Run,
    true,
    "`1000`",
    "messages one inbox keeps (at least 10); past it the oldest read ones go first, pinned and unread force-read \
     ones never while they can be shown (docs/http-api.md)",
);
pub const APP_SCHEMES: Setting = setting(
    "app-schemes",
    "HERALD_APP_SCHEMES",
    Flag::Run,
    true,
    "`herald`",
    "the apps' own URI schemes, comma-separated: the only ones a notification's `deep_link` action may open \
     (`url` actions and images are always `https`; docs/http-api.md)",
);
pub const MAX_PAGES_PER_SECOND: Setting = setting(
    "max-pages-per-second",
    "HERALD_MAX_PAGES_PER_SECOND",
    Flag::Run,
    true,
    "unbounded",
    "caps how fast sends are paged (500 receivers a page) across all sends, to spare downstream systems",
);
pub const CONSUMER_CONCURRENCY: Setting = setting(
    "consumer-concurrency",
    "HERALD_CONSUMER_CONCURRENCY",
    Flag::Run,
    true,
    "`32`",
    "broadcast pages a consumer holds at once, delivered in batches of half as many, each batch one step per store (direct pages have a lane of their own)",
);
pub const EVENTS_HEARTBEAT: Setting = setting(
    "events-heartbeat",
    "HERALD_EVENTS_HEARTBEAT",
    Flag::Run,
    true,
    "`15s`",
    "how often an idle live-update stream (server-sent events) sends a heartbeat comment, so proxies keep it and \
     a vanished client is noticed",
);
pub const EVENTS_MAX_AGE: Setting = setting(
    "events-max-age",
    "HERALD_EVENTS_MAX_AGE",
    Flag::Run,
    true,
    "`10m`",
    "a live-update stream ends after this long; clients reconnect with `Last-Event-ID`, so connections spread \
     over API processes again",
);
pub const EVENTS_PER_TOKEN: Setting = setting(
    "events-per-token",
    "HERALD_EVENTS_PER_TOKEN",
    Flag::Run,
    true,
    "`4`",
    "live-update streams one token may hold open in one process; more get `429 too_many_streams`",
);
pub const SECRET: Setting = setting(
    "secret",
    "HERALD_SECRET",
    Flag::None,
    false,
    "a random secret kept in `<data-dir>/secret`, created by the server's first start",
    "signs and checks bearer tokens: at least 32 characters, not repetitive (`openssl rand -hex 32`); set the \
     same value on every API process. `herald token` never creates one: it uses this or the data dir's",
);
pub const SECRET_PREVIOUS: Setting = setting(
    "secret-previous",
    "HERALD_SECRET_PREVIOUS",
    Flag::None,
    false,
    "unset",
    "while rotating: the old secret, still accepted (not used to sign) until the tokens it signed expire",
);
pub const SQL_URL: Setting = setting(
    "sql-url",
    "HERALD_SQL_URL",
    Flag::None,
    true,
    "unset (embedded SQLite)",
    "the SQL truth on MySQL/MariaDB (`mysql://user:password@host:port/database`, or `mariadb://…`): migrations \
     applied at start, shared by every process pointed at it. Needs a build with `--features mariadb`; without \
     it Herald refuses to start rather than silently running embedded",
);
pub const REDIS_URL: Setting = setting(
    "redis-url",
    "HERALD_REDIS_URL",
    Flag::None,
    true,
    "unset (embedded inbox store)",
    "inboxes, counters and the apps' inbox hints (pub/sub, to every API process) on Redis (built with \
     `--features redis`): one server `redis://…` / `rediss://…`, or a \
     Redis Cluster as its nodes' URLs separated by commas (`redis://10.0.0.1:7000,redis://10.0.0.2:7000`) or one \
     node as `redis+cluster://…` / `rediss+cluster://…`",
);
pub const REDIS_PREFIX: Setting = setting(
    "redis-prefix",
    "HERALD_REDIS_PREFIX",
    Flag::None,
    true,
    "`herald`",
    "what every Redis key and the hints' channel of this Herald start with (`<prefix>:`), so several Heralds \
     share one server: 1 to 64 characters, no braces or spaces",
);
pub const MQ_NAMESRV: Setting = setting(
    "mq-namesrv",
    "HERALD_MQ_NAMESRV",
    Flag::None,
    true,
    "unset (embedded queue)",
    "the queue on RocketMQ: its name servers, `host:port[;host:port…]` (a build with `--features rocketmq`; \
     a name server that does not answer within 15 s stops the start)",
);
pub const MQ_PREFIX: Setting = setting(
    "mq-prefix",
    "HERALD_MQ_PREFIX",
    Flag::None,
    true,
    "none (topics `herald_bulk`, `herald_direct`; group `herald_inbox`)",
    "starts the name of every RocketMQ topic and consumer group of this Herald (`<prefix>herald_bulk`), so \
     several Heralds (or test runs) share one broker: 1 to 64 letters, digits, `_` or `-`",
);
pub const MQ_PREFETCH: Setting = setting(
    "mq-prefetch",
    "HERALD_MQ_PREFETCH",
    Flag::None,
    true,
    "`64`",
    "bounds a RocketMQ consumer's memory: pages it fetches ahead per queue it consumes (1 to 65535; the client \
     fetches up to 16 more at once), so a consumer that falls behind keeps at most queues × (this + 16) pages, \
     however long the broker's backlog (docs/configuration.md, \"Bounded prefetch\")",
);
pub const SEARCH_URL: Setting = setting(
    "search-url",
    "HERALD_SEARCH_URL",
    Flag::None,
    true,
    "unset (the embedded index in `search/` of the data dir)",
    "the admin search mirror on an Elasticsearch- or OpenSearch-compatible server (`http://…`, `https://…`), \
     under the alias `<prefix>notifications` (`HERALD_SEARCH_PREFIX`). Needs a build with `--features elasticsearch`: without it Herald \
     refuses to start when this is set",
);
pub const SEARCH_PREFIX: Setting = setting(
    "search-prefix",
    "HERALD_SEARCH_PREFIX",
    Flag::None,
    true,
    "`herald-`",
    "starts the name of every index and alias of this Herald on the search server (the alias \
     `<prefix>notifications`), so several Heralds (or test runs) share one server: 1 to 64 lowercase letters, \
     digits, `_`, `-` or `.`, starting with a letter or digit",
);

/// Every setting, in the order the docs list them.
pub const SETTINGS: &[Setting] = &[
    CONFIG,
    DATA_DIR,
    LISTEN,
    OPS_ADDR,
    MAX_CONNECTIONS,
    HEADER_TIMEOUT,
    REQUEST_TIMEOUT,
    CONSOLE_CONNECTIONS,
    CONSOLE_WAIT,
    CONSOLE_STATEMENT_TIMEOUT,
    INBOX_CAP,
    APP_SCHEMES,
    MAX_PAGES_PER_SECOND,
    CONSUMER_CONCURRENCY,
    EVENTS_HEARTBEAT,
    EVENTS_MAX_AGE,
    EVENTS_PER_TOKEN,
    SECRET,
    SECRET_PREVIOUS,
    SQL_URL,
    REDIS_URL,
    REDIS_PREFIX,
    MQ_NAMESRV,
    MQ_PREFIX,
    MQ_PREFETCH,
    SEARCH_URL,
    SEARCH_PREFIX,
];

/// Where a value came from: what an error names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    File { key: &'static str, path: PathBuf },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(key) => write!(f, "--{key}"),
            Origin::Env(var) => f.write_str(var),
            Origin::File { key, path } => write!(f, "{key} in {}", path.display()),
        }
    }
}

/// A setting Herald cannot start with, and where it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: {problem}")]
    Invalid { origin: Origin, problem: String },
    #[error("{path}: {problem}", path = path.display())]
    File { path: PathBuf, problem: String },
}

/// Addresses of real servers (distributed mode), each with where it was set.
#[derive(Debug, Clone)]
pub struct ServerUrls {
    pub sql: Option<(String, Origin)>,
    pub redis: Option<(String, Origin)>,
    pub mq_namesrv: Option<(String, Origin)>,
    pub search: Option<(String, Origin)>,
    /// What this Herald's Redis keys start with (checked by the adapter, which knows what breaks slots).
    pub redis_prefix: String,
    /// What this Herald's RocketMQ topics and consumer groups start with (empty: none).
    pub mq_prefix: String,
    /// Pages a RocketMQ consumer fetches ahead per queue it consumes: the bound on its memory.
    pub mq_prefetch: u32,
    /// What this Herald's index and alias names on the search server start with.
    pub search_prefix: String,
}

impl ServerUrls {
    /// The same servers and prefixes as the variables of a `herald` process (the servers set,
    /// and every prefix), so a process started with them opens the same places.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let servers = [
            (&SQL_URL, &self.sql),
            (&REDIS_URL, &self.redis),
            (&MQ_NAMESRV, &self.mq_namesrv),
            (&SEARCH_URL, &self.search),
        ];
        let mut env: Vec<(&'static str, String)> = servers
            .into_iter()
            .filter_map(|(setting, server)| Some((setting.env, server.as_ref()?.0.clone())))
            .collect();
        env.extend([
            (REDIS_PREFIX.env, self.redis_prefix.clone()),
            (MQ_PREFIX.env, self.mq_prefix.clone()),
            (SEARCH_PREFIX.env, self.search_prefix.clone()),
        ]);
        env
    }
}

impl Default for ServerUrls {
    fn default() -> Self {
        Self {
            sql: None,
            redis: None,
            mq_namesrv: None,
            search: None,
            redis_prefix: "herald".to_string(),
            mq_prefix: String::new(),
            mq_prefetch: 64,
            search_prefix: "herald-".to_string(),
        }
    }
}

/// What the ops console's queries (search, preview, the notification pages) may use.
#[derive(Debug, Clone)]
pub struct ConsoleLimits {
    /// SQL connections of the console's own: at most this many console queries run at once.
    pub connections: u32,
    /// How long a console query waits for one of them before it is answered `console_busy`.
    pub wait: Duration,
    /// How long one console statement may run before it is stopped (`console_query_timeout`).
    pub statement_timeout: Duration,
}

impl Default for ConsoleLimits {
    /// One connection: on a small machine a heavy console query then takes at most one core, and
    /// the console's few operators take turns.
    fn default() -> Self {
        Self { connections: 1, wait: Duration::from_secs(10), statement_timeout: Duration::from_secs(5) }
    }
}

/// Everything a Herald process runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served on a listener of their own (any role).
    pub ops_listen: Option<String>,
    pub data_dir: PathBuf,
    pub secrets: SecretSettings,
    pub http: HttpLimits,
    pub console: ConsoleLimits,
    /// Entries one inbox keeps (see `InboxCap`).
    pub inbox_cap: InboxCap,
    /// The schemes deep links may use.
    pub app_schemes: AppSchemes,
    pub servers: ServerUrls,
    pub scheduler: SchedulerConfig,
    pub consumer: ConsumerConfig,
    pub streams: StreamLimits,
}

impl Settings {
    /// Embedded defaults in `data_dir`, listening on `listen`.
    pub fn embedded(data_dir: impl Into<PathBuf>, listen: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            ops_listen: None,
            data_dir: data_dir.into(),
            secrets: SecretSettings::default(),
            http: HttpLimits::default(),
            console: ConsoleLimits::default(),
            inbox_cap: InboxCap::default(),
            app_schemes: AppSchemes::default(),
            servers: ServerUrls::default(),
            scheduler: SchedulerConfig::default(),
            consumer: ConsumerConfig::default(),
            streams: StreamLimits::default(),
        }
    }
}

/// The settings of one start, and what the defaults alone would not say.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// The data dir when one was set (not defaulted): `bench` makes its runs inside it.
    pub chosen_data_dir: Option<PathBuf>,
}

/// The values given on the command line, raw, by setting key.
#[derive(Debug, Clone, Default)]
pub struct Flags(BTreeMap<&'static str, String>);

impl Flags {
    /// These flags and `more`'s.
    pub fn with(&self, more: &Flags) -> Flags {
        let mut all = self.0.clone();
        all.extend(more.0.iter().map(|(k, v)| (*k, v.clone())));
        Flags(all)
    }
}

/// The `HERALD_*` variables among `names` that are no setting: a typo would otherwise go unseen.
/// `HERALD_TEST_*` name the servers of the test suites (CI exports them), never a setting.
pub fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<String> {
    names
        .filter(|n| n.starts_with("HERALD_") && !n.starts_with("HERALD_TEST_") && !SETTINGS.iter().any(|s| s.env == n))
        .collect()
}

/// The flags every command takes (`--config`, `--data-dir`), for `#[command(flatten)]`.
#[derive(Debug, Clone, Default)]
pub struct GlobalFlags(pub Flags);

/// The flags of the commands that run roles, for `#[command(flatten)]`.
#[derive(Debug, Clone, Default)]
pub struct RunFlags(pub Flags);

fn flag_args(cmd: Command, scope: Flag) -> Command {
    SETTINGS.iter().filter(|s| s.flag == scope).fold(cmd, |cmd, s| {
        let default = format!(" [default: {}]", s.default.trim_matches('`'));
        let file = if s.in_file { format!(" [file: {}]", s.key) } else { String::new() };
        cmd.arg(
            Arg::new(s.key)
                .long(s.key)
                .value_name(s.key.to_uppercase().replace('-', "_"))
                .global(scope == Flag::Global)
                .help(format!("{}{} [env: {}]{file}", capitalized(s.meaning), default, s.env)),
        )
    })
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn given_flags(matches: &ArgMatches, scope: Flag) -> Flags {
    let given = SETTINGS.iter().filter(|s| s.flag == scope).filter_map(|s| {
        let value = matches.try_get_one::<String>(s.key).ok().flatten()?;
        Some((s.key, value.clone()))
    });
    Flags(given.collect())
}

macro_rules! flag_group {
    ($group:ident, $scope:expr) => {
        impl clap::FromArgMatches for $group {
            fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
                Ok(Self(given_flags(matches, $scope)))
            }

            fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
                self.0.0.extend(given_flags(matches, $scope).0);
                Ok(())
            }
        }

        impl clap::Args for $group {
            fn augment_args(cmd: Command) -> Command {
                flag_args(cmd, $scope)
            }

            fn augment_args_for_update(cmd: Command) -> Command {
                flag_args(cmd, $scope)
            }
        }
    };
}

flag_group!(GlobalFlags, Flag::Global);
flag_group!(RunFlags, Flag::Run);

/// Reads the settings: `flags` (global and, for a command that runs roles, its own), then the
/// environment through `env`, then the TOML file they name, then the defaults.
pub fn load(flags: &Flags, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let env = |var: &str| env(var).filter(|v| !v.is_empty());
    let file = match flags.0.get(CONFIG.key).cloned().or_else(|| env(CONFIG.env)) {
        Some(path) => Some(read_file(Path::new(&path))?),
        None => None,
    };
    let sources = Sources { flags, env: &env, file: file.as_ref() };
    let data_dir = sources.get(&DATA_DIR).map(|(raw, _)| PathBuf::from(raw));
    let defaults = Settings::embedded(data_dir.clone().unwrap_or_else(|| PathBuf::from("./herald-data")), "");
    let settings = Settings {
        listen: sources.parse(&LISTEN, parse_listen)?.unwrap_or_else(|| "127.0.0.1:8080".to_string()),
        ops_listen: sources.parse(&OPS_ADDR, parse_listen)?,
        secrets: SecretSettings {
            current: sources.get(&SECRET).map(|(raw, _)| raw),
            previous: sources.get(&SECRET_PREVIOUS).map(|(raw, _)| raw),
        },
        http: HttpLimits {
            header_timeout: sources.parse(&HEADER_TIMEOUT, parse_duration)?.unwrap_or(defaults.http.header_timeout),
            request_timeout: sources.parse(&REQUEST_TIMEOUT, parse_duration)?.unwrap_or(defaults.http.request_timeout),
            max_connections: sources.parse(&MAX_CONNECTIONS, parse_count)?.unwrap_or(defaults.http.max_connections),
        },
        console: ConsoleLimits {
            connections: sources.parse(&CONSOLE_CONNECTIONS, parse_count)?.unwrap_or(defaults.console.connections),
            wait: sources.parse(&CONSOLE_WAIT, parse_duration)?.unwrap_or(defaults.console.wait),
            statement_timeout: sources
                .parse(&CONSOLE_STATEMENT_TIMEOUT, parse_duration)?
                .unwrap_or(defaults.console.statement_timeout),
        },
        inbox_cap: sources.parse(&INBOX_CAP, parse_inbox_cap)?.unwrap_or(defaults.inbox_cap),
        app_schemes: sources
            .parse(&APP_SCHEMES, |raw| AppSchemes::parse("app-schemes", raw).map_err(|e| e.message))?
            .unwrap_or(defaults.app_schemes),
        servers: ServerUrls {
            sql: sources.server(&SQL_URL, &["mysql://", "mariadb://"])?,
            redis: sources
                .server_list(&REDIS_URL, &["redis://", "rediss://", "redis+cluster://", "rediss+cluster://"])?,
            mq_namesrv: sources.parse_with_origin(&MQ_NAMESRV, parse_name_servers)?,
            search: sources.server(&SEARCH_URL, &["http://", "https://"])?,
            redis_prefix: sources.get(&REDIS_PREFIX).map_or(defaults.servers.redis_prefix, |(raw, _)| raw),
            mq_prefix: sources.parse(&MQ_PREFIX, parse_mq_prefix)?.unwrap_or(defaults.servers.mq_prefix),
            mq_prefetch: sources.parse(&MQ_PREFETCH, parse_prefetch)?.unwrap_or(defaults.servers.mq_prefetch),
            search_prefix: sources
                .parse(&SEARCH_PREFIX, parse_search_prefix)?
                .unwrap_or(defaults.servers.search_prefix),
        },
        scheduler: SchedulerConfig {
            max_pages_per_second: sources.parse(&MAX_PAGES_PER_SECOND, parse_count)?,
            ..defaults.scheduler
        },
        consumer: ConsumerConfig {
            concurrency: sources.parse(&CONSUMER_CONCURRENCY, parse_count)?.unwrap_or(defaults.consumer.concurrency),
            ..defaults.consumer
        },
        streams: StreamLimits {
            heartbeat: sources.parse(&EVENTS_HEARTBEAT, parse_duration)?.unwrap_or(defaults.streams.heartbeat),
            max_age: sources.parse(&EVENTS_MAX_AGE, parse_duration)?.unwrap_or(defaults.streams.max_age),
            per_token: sources.parse(&EVENTS_PER_TOKEN, parse_count)?.unwrap_or(defaults.streams.per_token),
        },
        data_dir: defaults.data_dir,
    };
    Ok(Config { settings, chosen_data_dir: data_dir })
}

/// The settings of a TOML file: only keys of [`SETTINGS`] the file may set, each a string or a
/// number.
struct SettingsFile {
    path: PathBuf,
    values: BTreeMap<&'static str, String>,
}

fn read_file(path: &Path) -> Result<SettingsFile, ConfigError> {
    let failed = |problem: String| ConfigError::File { path: path.to_path_buf(), problem };
    let text = std::fs::read_to_string(path).map_err(|e| failed(format!("cannot read it: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| failed(e.message().to_string()))?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let setting = SETTINGS.iter().find(|s| s.key == key && s.in_file).ok_or_else(|| {
            let known: Vec<&str> = SETTINGS.iter().filter(|s| s.in_file).map(|s| s.key).collect();
            failed(format!("unknown setting {key:?}; the file may set {}", known.join(", ")))
        })?;
        let raw = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            other => return Err(failed(format!("{key:?} must be a string or a number, not {}", other.type_str()))),
        };
        values.insert(setting.key, raw);
    }
    Ok(SettingsFile { path: path.to_path_buf(), values })
}

struct Sources<'a> {
    flags: &'a Flags,
    env: &'a dyn Fn(&str) -> Option<String>,
    file: Option<&'a SettingsFile>,
}

impl Sources<'_> {
    /// The raw value with the highest precedence, and where it came from.
    fn get(&self, s: &Setting) -> Option<(String, Origin)> {
        if let Some(v) = self.flags.0.get(s.key) {
            return Some((v.clone(), Origin::Flag(s.key)));
        }
        if let Some(v) = (self.env)(s.env) {
            return Some((v, Origin::Env(s.env)));
        }
        let file = self.file?;
        let v = file.values.get(s.key)?;
        Some((v.clone(), Origin::File { key: s.key, path: file.path.clone() }))
    }

    fn parse_with_origin<T>(
        &self,
        s: &Setting,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<Option<(T, Origin)>, ConfigError> {
        let Some((raw, origin)) = self.get(s) else { return Ok(None) };
        match parse(raw.trim()) {
            Ok(v) => Ok(Some((v, origin))),
            Err(problem) => Err(ConfigError::Invalid { origin, problem }),
        }
    }

    fn parse<T>(&self, s: &Setting, parse: fn(&str) -> Result<T, String>) -> Result<Option<T>, ConfigError> {
        Ok(self.parse_with_origin(s, parse)?.map(|(v, _)| v))
    }

    /// A server's URL, whose scheme must name a backend Herald knows.
    fn server(&self, s: &Setting, schemes: &[&str]) -> Result<Option<(String, Origin)>, ConfigError> {
        let Some((raw, origin)) = self.get(s) else { return Ok(None) };
        let url = raw.trim();
        match known_scheme(url, schemes) {
            Ok(()) => Ok(Some((url.to_string(), origin))),
            Err(problem) => Err(ConfigError::Invalid { origin, problem }),
        }
    }

    /// Like `server`, for a setting that may list several servers separated by commas (the nodes of
    /// a cluster): each must be a URL of one of `schemes`.
    fn server_list(&self, s: &Setting, schemes: &[&str]) -> Result<Option<(String, Origin)>, ConfigError> {
        let Some((raw, origin)) = self.get(s) else { return Ok(None) };
        let urls = raw.trim();
        match urls.split(',').try_for_each(|url| known_scheme(url.trim(), schemes)) {
            Ok(()) => Ok(Some((urls.to_string(), origin))),
            Err(problem) => Err(ConfigError::Invalid { origin, problem }),
        }
    }
}

fn known_scheme(url: &str, schemes: &[&str]) -> Result<(), String> {
    if schemes.iter().any(|scheme| url.starts_with(scheme) && url.len() > scheme.len()) {
        return Ok(());
    }
    Err(format!("unknown backend {url:?}; expected a URL starting with {}", schemes.join(" or ")))
}

/// A whole number of at least 1.
fn parse_count<T: std::str::FromStr + PartialOrd + From<u8>>(raw: &str) -> Result<T, String> {
    let n: T = raw.parse().map_err(|_| format!("not a number: {raw:?}"))?;
    if n < T::from(1) {
        return Err(format!("must be at least 1, not {raw}"));
    }
    Ok(n)
}

/// What the RocketMQ client takes as a queue's prefetch.
fn parse_prefetch(raw: &str) -> Result<u32, String> {
    let n: u32 = parse_count(raw)?;
    if n > 65_535 {
        return Err(format!("must be at most 65535, not {raw}"));
    }
    Ok(n)
}

fn parse_inbox_cap(raw: &str) -> Result<InboxCap, String> {
    let cap: usize = raw.parse().map_err(|_| format!("not a number: {raw:?}"))?;
    InboxCap::new("inbox-cap", cap).map_err(|e| e.to_string())
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let d = crate::duration::parse(raw)?;
    if d.is_zero() {
        return Err("must be longer than 0s".to_string());
    }
    Ok(d)
}

/// `host:port`, the port a number (the host may be a name, resolved when listening).
fn host_port(raw: &str) -> Result<(), String> {
    match raw.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("expected host:port, like 127.0.0.1:8080, not {raw:?}")),
    }
}

fn parse_listen(raw: &str) -> Result<String, String> {
    host_port(raw).map(|()| raw.to_string())
}

fn parse_name_servers(raw: &str) -> Result<String, String> {
    raw.split(';').try_for_each(|one| host_port(one.trim())).map(|()| raw.to_string())
}

/// A RocketMQ name's start: the broker takes letters, digits, `_` and `-` in topic and group names
/// (`%` and `|` are its own), and the longest topic (`%RETRY%<prefix>herald_inbox`) stays far
/// under its 127 characters.
fn parse_mq_prefix(raw: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if raw.is_empty() || raw.len() > 64 || !raw.chars().all(allowed) {
        return Err(format!("expected 1 to 64 letters, digits, `_` or `-`, not {raw:?}"));
    }
    Ok(raw.to_string())
}

/// An index name's start: Elasticsearch takes lowercase names without `\ / * ? " < > | , # :` or
/// spaces, not starting with `-`, `_`, `+` or `.`.
fn parse_search_prefix(raw: &str) -> Result<String, String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-.".contains(c);
    let starts_well = raw.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !starts_well || raw.len() > 64 || !raw.chars().all(allowed) {
        return Err(format!(
            "expected 1 to 64 lowercase letters, digits, `_`, `-` or `.`, starting with a letter or digit, not \
             {raw:?}"
        ));
    }
    Ok(raw.to_string())
}

/// The table of every setting, as `docs/configuration.md` shows it.
pub fn markdown_table() -> String {
    let mut table =
        String::from("| flag | variable | file key | default | meaning |\n| --- | --- | --- | --- | --- |\n");
    for s in SETTINGS {
        let flag = match s.flag {
            Flag::Global | Flag::Run => format!("`--{}`", s.key),
            Flag::None => "—".to_string(),
        };
        let key = if s.in_file { format!("`{}`", s.key) } else { "—".to_string() };
        table.push_str(&format!("| {flag} | `{}` | {key} | {} | {} |\n", s.env, s.default, s.meaning));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_variable_is_reported_but_the_test_suites_servers_are_not() {
        let names = ["HERALD_LISTEN", "HERALD_LISTN", "HERALD_TEST_MYSQL_URL", "PATH"].map(String::from);
        assert_eq!(unknown_variables(names.into_iter()), ["HERALD_LISTN"]);
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    fn flags(pairs: &[(&'static str, &str)]) -> Flags {
        Flags(pairs.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    #[test]
    fn defaults_are_the_embedded_ones() {
        let config = load(&Flags::default(), env_of(&[])).unwrap();
        let s = config.settings;
        assert_eq!((s.listen.as_str(), s.data_dir.as_path()), ("127.0.0.1:8080", Path::new("./herald-data")));
        assert_eq!(format!("{:?}", s.http), format!("{:?}", HttpLimits::default()));
        assert_eq!(s.consumer.concurrency, ConsumerConfig::default().concurrency);
        assert!(s.scheduler.max_pages_per_second.is_none() && s.servers.sql.is_none() && s.servers.search.is_none());
        assert!(config.chosen_data_dir.is_none());
    }

    /// A default the docs write as a value is the value Herald takes when nothing is given.
    #[test]
    fn the_documented_defaults_are_the_defaults() {
        let nothing = format!("{:?}", load(&Flags::default(), env_of(&[])).unwrap().settings);
        for s in SETTINGS.iter().filter(|s| s.default.starts_with('`')) {
            let given = env_of(&[(s.env, s.default.trim_matches('`'))]);
            assert_eq!(format!("{:?}", load(&Flags::default(), given).unwrap().settings), nothing, "{}", s.env);
        }
    }

    #[test]
    fn a_flag_beats_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, "listen = \"10.0.0.1:1\"\nmax-connections = 7\nconsumer-concurrency = 3\n").unwrap();
        let file = path.to_str().unwrap();
        let env = env_of(&[("HERALD_CONFIG", file), ("HERALD_LISTEN", "10.0.0.2:2"), ("HERALD_MAX_CONNECTIONS", "8")]);
        let s = load(&flags(&[("listen", "10.0.0.3:3")]), env).unwrap().settings;
        assert_eq!((s.listen.as_str(), s.http.max_connections, s.consumer.concurrency), ("10.0.0.3:3", 8, 3));
    }

    #[test]
    fn a_process_started_with_the_servers_env_opens_the_same_places() {
        let given = [
            ("HERALD_SQL_URL", "mysql://u:p@db:3306/herald_run"),
            ("HERALD_REDIS_URL", "redis://a:7000,redis://b:7001"),
            ("HERALD_REDIS_PREFIX", "bench:1"),
            ("HERALD_MQ_NAMESRV", "mq:9876"),
            ("HERALD_MQ_PREFIX", "b1_"),
            ("HERALD_SEARCH_URL", "http://search:9200"),
            ("HERALD_SEARCH_PREFIX", "bench-1-"),
        ];
        let servers = load(&flags(&[]), env_of(&given)).unwrap().settings.servers;
        let mut env: Vec<(String, String)> = servers.env().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        env.sort();
        let mut expected: Vec<(String, String)> = given.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        expected.sort();
        assert_eq!(env, expected);
        let none = load(&flags(&[]), env_of(&[])).unwrap().settings.servers.env();
        assert!(none.iter().all(|(k, _)| k.ends_with("_PREFIX")), "{none:?}");
    }

    #[test]
    fn errors_name_where_the_bad_value_was_given() {
        let err = |f: &[(&'static str, &str)], e: &[(&str, &str)]| load(&flags(f), env_of(e)).unwrap_err().to_string();
        assert_eq!(err(&[], &[("HERALD_MAX_CONNECTIONS", "lots")]), "HERALD_MAX_CONNECTIONS: not a number: \"lots\"");
        assert_eq!(err(&[("max-connections", "0")], &[]), "--max-connections: must be at least 1, not 0");
        assert!(err(&[], &[("HERALD_HEADER_TIMEOUT", "5 minutes")]).starts_with("HERALD_HEADER_TIMEOUT: "));
        assert!(err(&[], &[("HERALD_LISTEN", "8080")]).starts_with("HERALD_LISTEN: expected host:port"));
        let sql = err(&[], &[("HERALD_SQL_URL", "postgres://db/herald")]);
        assert!(sql.starts_with("HERALD_SQL_URL: unknown backend \"postgres://db/herald\""), "{sql}");
        assert!(err(&[], &[("HERALD_MQ_NAMESRV", "a:9876;b")]).starts_with("HERALD_MQ_NAMESRV: expected host:port"));
        let mq = err(&[], &[("HERALD_MQ_PREFIX", "run%1")]);
        assert!(mq.starts_with("HERALD_MQ_PREFIX: expected 1 to 64 letters"), "{mq}");
        assert!(err(&[], &[("HERALD_MQ_PREFIX", &"p".repeat(65))]).starts_with("HERALD_MQ_PREFIX: "));
        for bad in ["Herald-", "_herald", "a b", "a/b", "a:b"] {
            let search = err(&[], &[("HERALD_SEARCH_PREFIX", bad)]);
            assert!(search.starts_with("HERALD_SEARCH_PREFIX: expected 1 to 64 lowercase"), "{bad}: {search}");
        }
        let cluster = err(&[], &[("HERALD_REDIS_URL", "redis://a:7000,b:7001")]);
        assert!(cluster.starts_with("HERALD_REDIS_URL: unknown backend \"b:7001\""), "{cluster}");
    }

    #[test]
    fn redis_takes_one_server_or_a_cluster() {
        let redis = |url: &str| load(&Flags::default(), env_of(&[("HERALD_REDIS_URL", url)])).unwrap().settings.servers;
        let nodes = "redis://127.0.0.1:7000, redis://127.0.0.1:7001";
        assert_eq!(redis(nodes).redis.map(|(url, _)| url).as_deref(), Some(nodes));
        assert!(redis("rediss+cluster://node:7000").redis.is_some());
        assert_eq!(redis("redis://cache").redis_prefix, "herald");
    }

    #[test]
    fn the_file_names_its_bad_keys_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        let with = |text: &str| {
            std::fs::write(&path, text).unwrap();
            load(&flags(&[("config", path.to_str().unwrap())]), env_of(&[])).unwrap_err().to_string()
        };
        let unknown = with("listen = \"127.0.0.1:1\"\nlisten_port = 2\n");
        assert!(unknown.contains("unknown setting \"listen_port\""), "{unknown}");
        assert!(with("secret = \"x\"\n").contains("unknown setting \"secret\""), "secrets stay out of files");
        let bad = with("request-timeout = \"soon\"\n");
        assert!(bad.starts_with(&format!("request-timeout in {}: ", path.display())), "{bad}");
        assert!(with("max-connections = true\n").contains("must be a string or a number, not boolean"));
        assert!(with("listen = \n").starts_with(&path.display().to_string()));
        let missing = load(&flags(&[("config", "/nonexistent/herald.toml")]), env_of(&[])).unwrap_err();
        assert!(missing.to_string().starts_with("/nonexistent/herald.toml: cannot read it"), "{missing}");
    }

    /// Each setting of the list changes what Herald runs with: none is listed and then ignored.
    #[test]
    fn every_listed_setting_is_read() {
        let sample = |s: &Setting| match s.key {
            "listen" | "ops-addr" => "0.0.0.0:9",
            "inbox-cap" => "30",
            "header-timeout"
            | "request-timeout"
            | "console-wait"
            | "console-statement-timeout"
            | "events-heartbeat"
            | "events-max-age" => "7m",
            "sql-url" => "mysql://db/herald",
            "redis-url" => "redis://cache",
            "mq-namesrv" => "mq:9876",
            "search-url" => "http://search:9200",
            "secret" | "secret-previous" | "data-dir" => "a-value-nobody-would-default-to",
            "app-schemes" => "courier,herald",
            _ => "3",
        };
        let baseline = format!("{:?}", load(&Flags::default(), env_of(&[])).unwrap().settings);
        for s in SETTINGS.iter().filter(|s| **s != CONFIG) {
            let value = sample(s);
            let changed = format!("{:?}", load(&Flags::default(), env_of(&[(s.env, value)])).unwrap().settings);
            assert_ne!(changed, baseline, "{} is listed but changes nothing", s.env);
        }
    }

    #[test]
    fn the_docs_table_is_the_list() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
        let table = markdown_table();
        let begin = "<!-- settings table: rendered by herald::config::markdown_table -->\n";
        let shown = doc.split_once(begin).and_then(|(_, rest)| rest.split_once("<!-- end of settings table -->"));
        assert_eq!(
            shown.map(|(t, _)| t),
            Some(table.as_str()),
            "docs/configuration.md must hold, as rendered:\n{table}"
        );
    }
}
