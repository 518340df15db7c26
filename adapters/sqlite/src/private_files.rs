//! Herald's SQLite files hold its truth and its projections: nobody but the user running Herald may
//! read them. Each is made `0600` before SQLite opens it.

use std::io;
use std::path::Path;

/// Makes `path` a file only its owner can read and write, creating it empty if missing. SQLite
/// gives its `-wal` and `-shm` files the mode of the database file, so they follow.
pub fn restrict_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    drop(file);
    Ok(())
}
