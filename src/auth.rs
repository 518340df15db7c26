//! Bearer tokens: HMAC-SHA256-signed claims, made by `herald token` and checked by the API.
//!
//! Form: `hrld1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(secret, "hrld1." + claims))>`.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use herald_domain::{ReceiverId, ReceiverKind, ReceiverRef};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "hrld1.";
/// Shortest secret accepted: 32 characters (the generated one is 64 hex digits).
pub const MIN_SECRET_LEN: usize = 32;

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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a Herald token")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl TokenSigner {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self { secret: secret.into() }
    }

    /// `HERALD_SECRET` when given, else the secret kept in the data dir (made on first use).
    /// A secret shorter than `MIN_SECRET_LEN` is refused: tokens signed with it could be forged.
    pub fn from_env_or_data_dir(secret: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(s) = secret.filter(|s| !s.is_empty()) {
            anyhow::ensure!(s.len() >= MIN_SECRET_LEN, "HERALD_SECRET must be at least {MIN_SECRET_LEN} characters");
            return Ok(Self::new(s.as_bytes()));
        }
        let path = data_dir.join("secret");
        match std::fs::read_to_string(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::private_files::create_dir(data_dir)
                    .with_context(|| format!("creating {}", data_dir.display()))?;
                let fresh: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
                write_once(&path, &fresh).with_context(|| format!("writing {}", path.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        // Read back: when two processes create it at once, both use the one that won.
        let kept = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let kept = kept.trim();
        anyhow::ensure!(
            kept.len() >= MIN_SECRET_LEN,
            "{} holds no usable secret; delete it to make a new one (every token changes)",
            path.display()
        );
        Ok(Self::new(kept.as_bytes()))
    }

    fn mac(&self, signed: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(signed.as_bytes());
        mac
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{PREFIX}{body}");
        let sig = B64.encode(self.mac(&signed).finalize().into_bytes());
        format!("{signed}.{sig}")
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let (signed, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let body = signed.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        self.mac(signed).verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
        let json = B64.decode(body).map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
    }
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

    #[test]
    fn round_trips_and_rejects_tampering() {
        let signer = TokenSigner::new("s3cret");
        let claims = Claims::App { kind: ReceiverKind::Rider, id: ReceiverId::parse("", "r1").unwrap() };
        let token = signer.sign(&claims);
        assert_eq!(signer.verify(&token).unwrap(), claims);
        assert_eq!(TokenSigner::new("other").verify(&token), Err(TokenError::BadSignature));
        let forged = signer.sign(&Claims::Admin { role: AdminRole::Operator });
        let (forged_body, _) = forged.rsplit_once('.').unwrap();
        let (_, real_sig) = token.rsplit_once('.').unwrap();
        assert_eq!(signer.verify(&format!("{forged_body}.{real_sig}")), Err(TokenError::BadSignature));
        assert_eq!(signer.verify("nonsense"), Err(TokenError::Malformed));
    }

    #[test]
    fn refuses_short_or_broken_secrets() {
        let dir = tempfile::tempdir().unwrap();
        assert!(TokenSigner::from_env_or_data_dir(Some("short"), dir.path()).is_err());
        std::fs::write(dir.path().join("secret"), "").unwrap();
        assert!(TokenSigner::from_env_or_data_dir(None, dir.path()).is_err());
    }

    #[test]
    fn processes_creating_the_secret_at_once_agree_on_one() {
        let dir = tempfile::tempdir().unwrap();
        let tokens: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let signer = TokenSigner::from_env_or_data_dir(None, dir.path()).unwrap();
                        signer.sign(&Claims::Admin { role: AdminRole::Viewer })
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
    fn keeps_the_generated_secret() {
        let dir = tempfile::tempdir().unwrap();
        let a = TokenSigner::from_env_or_data_dir(None, dir.path()).unwrap();
        let b = TokenSigner::from_env_or_data_dir(None, dir.path()).unwrap();
        let t = a.sign(&Claims::Admin { role: AdminRole::Viewer });
        assert!(b.verify(&t).is_ok());
    }
}
