//! Herald's data directory holds the token secret and every embedded store: nobody but the user
//! running Herald may read it. The directory is made `0700`; each file `0600` (the embedded stores'
//! files by `herald-sqlite`).

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) if missing; a directory Herald creates is its owner's alone.
/// An existing directory is left as the user made it (it may be shared on purpose), with a warning
/// when others can read it.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            if std::fs::metadata(dir)?.permissions().mode() & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), "the data directory is readable by other users; chmod 700 it");
            }
        }
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
