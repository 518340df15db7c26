//! Bearer tokens: HMAC-SHA256-signed claims, made by `herald token` and checked by the API.
//!
//! Form: `hrld1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(secret, "hrld1." + claims))>`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use herald_domain::{ReceiverId, ReceiverKind, ReceiverRef};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "hrld1.";
/// Shortest secret accepted: 32 characters (the generated one is 64 hex digits).
pub const MIN_SECRET_LEN: usize = 32;
/// Least estimated entropy of a secret, in bits (a random 32-character hex string has ≈ 110).
const MIN_SECRET_BITS: f64 = 80.0;
/// How long a token lasts unless `--ttl` says otherwise: a console session, an app install's month.
pub const ADMIN_TTL: Duration = Duration::from_secs(12 * 3600);
pub const APP_TTL: Duration = Duration::from_secs(30 * 86_400);
/// The longest a token may last: the grace period a rotated secret must be kept for.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 86_400);
/// The secret file in the data dir, and the one a rotation keeps for tokens signed before it.
const SECRET_FILE: &str = "secret";
const PREVIOUS_SECRET_FILE: &str = "secret.previous";

/// What an admin token may do: operators write, viewers only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    Operator,
    Viewer,
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "sub", rename_all = "lowercase")]
pub enum Claims {
    Admin { role: AdminRole },
    App { kind: ReceiverKind, id: ReceiverId },
}

impl Claims {
    pub fn receiver(&self) -> Option<ReceiverRef> {
        match self {
            Claims::App { kind, id } => Some(ReceiverRef { kind: *kind, id: id.clone() }),
            Claims::Admin { .. } => None,
        }
    }

    /// How long a token for these claims lasts by default.
    pub fn default_ttl(&self) -> Duration {
        match self {
            Claims::Admin { .. } => ADMIN_TTL,
            Claims::App { .. } => APP_TTL,
        }
    }
}

/// The signed payload: the claims and when they stop being honoured (Unix seconds).
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    #[serde(flatten)]
    claims: Claims,
    exp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a Herald token")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token expired at {0}; ask for a new one")]
    Expired(String),
}

/// Why a secret is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("{origin} must be at least {MIN_SECRET_LEN} characters (not counting surrounding spaces)")]
    TooShort { origin: String },
    #[error("{origin} is too predictable (repeated or few distinct characters); use e.g. `openssl rand -hex 32`")]
    LowEntropy { origin: String },
}

/// A signing secret that is long and random enough. Surrounding whitespace is dropped, the same
/// way for `HERALD_SECRET` and for the file in the data dir.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn parse(origin: &str, raw: &str) -> Result<Self, SecretError> {
        let value = raw.trim();
        if value.chars().count() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort { origin: origin.to_string() });
        }
        if estimated_bits(value) < MIN_SECRET_BITS {
            return Err(SecretError::LowEntropy { origin: origin.to_string() });
        }
        Ok(Self(value.as_bytes().to_vec()))
    }

    fn generate() -> String {
        (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
    }
}

/// The secret's length times the Shannon entropy of its characters: `aaaa…` and `abab…` score
/// near nothing, random hex about 3.5–4 bits a character.
fn estimated_bits(value: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in value.chars() {
        *counts.entry(c).or_insert(0u32) += 1;
    }
    let n = value.chars().count() as f64;
    let per_char: f64 = counts.values().map(|&k| -(k as f64 / n) * (k as f64 / n).log2()).sum();
    per_char * n
}

/// Where the secret came from, so the CLI can say which one it signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env,
    File(PathBuf),
}

impl std::fmt::Display for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::Env => f.write_str("HERALD_SECRET"),
            SecretSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The secrets a process was given: `HERALD_SECRET` (and `HERALD_SECRET_PREVIOUS` while rotating).
#[derive(Debug, Clone, Default)]
pub struct SecretSettings {
    pub current: Option<String>,
    pub previous: Option<String>,
}

/// Signs with the current secret; verifies with it or, while a rotation's grace period lasts, with
/// the previous one, so that rotating the secret logs nobody out before their token expires.
#[derive(Clone)]
pub struct TokenSigner {
    current: Secret,
    previous: Option<Secret>,
    source: SecretSource,
}

impl TokenSigner {
    /// A signer over a secret the caller vouches for (tests, benchmarks).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self { current: Secret(secret.into()), previous: None, source: SecretSource::Env }
    }

    /// The server's signer: `HERALD_SECRET` when set, else the secret in the data dir, which the
    /// server creates on its first start. Only the server creates one.
    pub fn for_server(settings: &SecretSettings, data_dir: &Path) -> anyhow::Result<Self> {
        if settings.current.is_none() {
            let path = data_dir.join(SECRET_FILE);
            if !path.exists() {
                crate::private_files::create_dir(data_dir)
                    .with_context(|| format!("creating {}", data_dir.display()))?;
                write_once(&path, &Secret::generate()).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Self::existing(settings, data_dir)
    }

    /// The signer of a secret that already exists: `HERALD_SECRET`, else the data dir's file. Never
    /// makes one (a token signed with a secret no server uses would be refused).
    pub fn existing(settings: &SecretSettings, data_dir: &Path) -> anyhow::Result<Self> {
        let (current, previous, source) = match &settings.current {
            Some(raw) => {
                let previous =
                    settings.previous.as_deref().map(|p| Secret::parse("HERALD_SECRET_PREVIOUS", p)).transpose()?;
                (Secret::parse("HERALD_SECRET", raw)?, previous, SecretSource::Env)
            }
            None => {
                let path = data_dir.join(SECRET_FILE);
                let raw = match std::fs::read_to_string(&path) {
                    Ok(raw) => raw,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
                        "no token secret at {}: start `herald serve` (or `herald api`) with this --data-dir once, \
                         which creates it, or set HERALD_SECRET to the secret your server uses",
                        path.display()
                    ),
                    Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
                };
                let current = Secret::parse(&path.display().to_string(), &raw)
                    .with_context(|| format!("delete {} to make a new one (every token changes)", path.display()))?;
                let previous_path = data_dir.join(PREVIOUS_SECRET_FILE);
                let previous = match std::fs::read_to_string(&previous_path) {
                    Ok(raw) => Some(Secret::parse(&previous_path.display().to_string(), &raw)?),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(e).with_context(|| format!("reading {}", previous_path.display())),
                };
                let absolute = std::path::absolute(&path).unwrap_or(path);
                (current, previous, SecretSource::File(absolute))
            }
        };
        Ok(Self { current, previous, source })
    }

    /// Makes a new secret in the data dir and keeps the old one as the previous secret, which still
    /// verifies the tokens signed with it until they expire. Servers pick it up when restarted.
    pub fn rotate(data_dir: &Path) -> anyhow::Result<PathBuf> {
        let path = data_dir.join(SECRET_FILE);
        anyhow::ensure!(path.exists(), "no token secret at {} to rotate", path.display());
        let previous = data_dir.join(PREVIOUS_SECRET_FILE);
        std::fs::rename(&path, &previous).with_context(|| format!("moving {} aside", path.display()))?;
        write_once(&path, &Secret::generate()).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Which secret this signer uses.
    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    fn mac(secret: &Secret, signed: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC takes any key length");
        mac.update(signed.as_bytes());
        mac
    }

    /// A token for `claims` lasting their default time.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_for(claims, claims.default_ttl(), Utc::now())
    }

    /// A token for `claims` valid from `now` for `ttl` (at most `MAX_TTL`).
    pub fn sign_for(&self, claims: &Claims, ttl: Duration, now: DateTime<Utc>) -> String {
        let exp = now.timestamp().saturating_add(ttl.min(MAX_TTL).as_secs() as i64);
        let payload = Payload { claims: claims.clone(), exp };
        let body = B64.encode(serde_json::to_vec(&payload).expect("claims serialize"));
        let signed = format!("{PREFIX}{body}");
        let sig = B64.encode(Self::mac(&self.current, &signed).finalize().into_bytes());
        format!("{signed}.{sig}")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, Utc::now())
    }

    pub fn verify_at(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let body = signed.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let signed_by = |secret: &Secret| Self::mac(secret, signed).verify_slice(&sig).is_ok();
        if !signed_by(&self.current) && !self.previous.as_ref().is_some_and(signed_by) {
            return Err(TokenError::BadSignature);
        }
        let json = B64.decode(body).map_err(|_| TokenError::Malformed)?;
        let payload: Payload = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if now.timestamp() >= payload.exp {
            let at =
                DateTime::from_timestamp(payload.exp, 0).map_or_else(|| payload.exp.to_string(), |t| t.to_rfc3339());
            return Err(TokenError::Expired(at));
        }
        Ok(payload.claims)
    }
}

/// A token lifetime as people write one (`90s`, `30m`, `12h`, `30d`), more than 0 and at most 365d.
pub fn parse_ttl(raw: &str) -> Result<Duration, String> {
    let ttl = crate::duration::parse(raw)?;
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(format!("{raw:?}: must be more than 0 and at most 365d"));
    }
    Ok(ttl)
}

/// Writes the file whole or not at all, readable by its owner only, and never over an existing one:
/// a complete temp file is hard-linked into place, which fails if another process got there first.
fn write_once(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension(format!("tmp{:016x}", rand::random::<u64>()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    fn rider() -> Claims {
        Claims::App { kind: ReceiverKind::Rider, id: ReceiverId::parse("", "r1").unwrap() }
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let signer = TokenSigner::new(SECRET);
        let token = signer.sign(&rider());
        assert_eq!(signer.verify(&token).unwrap(), rider());
        assert_eq!(TokenSigner::new("other").verify(&token), Err(TokenError::BadSignature));
        let forged = signer.sign(&Claims::Admin { role: AdminRole::Operator });
        let (forged_body, _) = forged.rsplit_once('.').unwrap();
        let (_, real_sig) = token.rsplit_once('.').unwrap();
        assert_eq!(signer.verify(&format!("{forged_body}.{real_sig}")), Err(TokenError::BadSignature));
        assert_eq!(signer.verify("nonsense"), Err(TokenError::Malformed));
    }

    #[test]
    fn tokens_expire() {
        let signer = TokenSigner::new(SECRET);
        let now = Utc::now();
        let token = signer.sign_for(&rider(), Duration::from_secs(60), now);
        assert!(signer.verify_at(&token, now + chrono::Duration::seconds(59)).is_ok());
        let late = signer.verify_at(&token, now + chrono::Duration::seconds(60));
        assert!(matches!(late, Err(TokenError::Expired(_))), "{late:?}");
        let long = signer.sign_for(&rider(), Duration::from_secs(10 * 365 * 86_400), now);
        let capped = now + chrono::Duration::from_std(MAX_TTL).unwrap();
        assert!(matches!(signer.verify_at(&long, capped), Err(TokenError::Expired(_))), "ttl is capped");
        let admin = signer.sign(&Claims::Admin { role: AdminRole::Viewer });
        assert!(signer.verify_at(&admin, now + chrono::Duration::hours(11)).is_ok());
        assert!(signer.verify_at(&admin, now + chrono::Duration::hours(13)).is_err(), "admin default is 12 h");
    }

    #[test]
    fn refuses_short_blank_or_predictable_secrets_from_env_and_file_alike() {
        let dir = tempfile::tempdir().unwrap();
        let env = |s: &str| SecretSettings { current: Some(s.to_string()), previous: None };
        for bad in
            ["short", &" ".repeat(33), &"a".repeat(64), &"ab".repeat(20), "  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  "]
        {
            assert!(TokenSigner::existing(&env(bad), dir.path()).is_err(), "HERALD_SECRET={bad:?}");
            std::fs::write(dir.path().join("secret"), bad).unwrap();
            assert!(TokenSigner::for_server(&SecretSettings::default(), dir.path()).is_err(), "file {bad:?}");
        }
        let padded = format!("  {SECRET}\n");
        let from_env = TokenSigner::existing(&env(&padded), dir.path()).unwrap();
        std::fs::write(dir.path().join("secret"), &padded).unwrap();
        let from_file = TokenSigner::existing(&SecretSettings::default(), dir.path()).unwrap();
        let token = from_env.sign(&rider());
        assert!(from_file.verify(&token).is_ok(), "env and file values are trimmed the same way");
        assert!(TokenSigner::existing(&env(&Secret::generate()), dir.path()).is_ok(), "a generated one passes");
    }

    #[test]
    fn only_the_server_creates_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let err = TokenSigner::existing(&SecretSettings::default(), dir.path()).err().unwrap();
        assert!(err.to_string().contains("herald serve"), "{err}");
        assert!(!dir.path().join("secret").exists());
        let server = TokenSigner::for_server(&SecretSettings::default(), dir.path()).unwrap();
        let cli = TokenSigner::existing(&SecretSettings::default(), dir.path()).unwrap();
        assert!(server.verify(&cli.sign(&rider())).is_ok());
        assert!(matches!(cli.source(), SecretSource::File(p) if p.is_absolute() && p.ends_with("secret")));
    }

    #[test]
    fn a_rotated_secret_still_verifies_old_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let before = TokenSigner::for_server(&SecretSettings::default(), dir.path()).unwrap();
        let old_token = before.sign(&rider());
        TokenSigner::rotate(dir.path()).unwrap();
        let after = TokenSigner::for_server(&SecretSettings::default(), dir.path()).unwrap();
        assert!(after.verify(&old_token).is_ok(), "a rider is not logged out by a rotation");
        assert_eq!(before.verify(&after.sign(&rider())), Err(TokenError::BadSignature), "a new secret signs");
        TokenSigner::rotate(dir.path()).unwrap();
        let twice = TokenSigner::for_server(&SecretSettings::default(), dir.path()).unwrap();
        assert_eq!(twice.verify(&old_token), Err(TokenError::BadSignature), "two rotations drop the oldest");

        let env = SecretSettings { current: Some(Secret::generate()), previous: Some(SECRET.to_string()) };
        let rotating = TokenSigner::existing(&env, dir.path()).unwrap();
        assert!(rotating.verify(&TokenSigner::new(SECRET).sign(&rider())).is_ok(), "HERALD_SECRET_PREVIOUS");
    }

    #[test]
    fn processes_creating_the_secret_at_once_agree_on_one() {
        let dir = tempfile::tempdir().unwrap();
        let tokens: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let signer = TokenSigner::for_server(&SecretSettings::default(), dir.path()).unwrap();
                        signer.sign_for(&Claims::Admin { role: AdminRole::Viewer }, ADMIN_TTL, DateTime::UNIX_EPOCH)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(tokens.windows(2).all(|w| w[0] == w[1]), "every caller signs with the same secret");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only the secret file remains");
    }

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_ttl("30d"), Ok(Duration::from_secs(2_592_000)));
        for bad in ["", "12", "h", "0h", "366d", "1w", "-5m"] {
            assert!(parse_ttl(bad).is_err(), "{bad:?}");
        }
    }
}
