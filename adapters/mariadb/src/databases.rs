//! Databases of their own on a shared server, made and dropped by tests and tools (each contract
//! case, each `TestHerald`), never by Herald itself.

use sqlx::Connection as _;

/// The URL of the database `name` on the server `url` names (its user, password and host).
pub fn database_url(url: &str, name: &str) -> String {
    format!("{}{name}", server_base(url))
}

/// `mysql://user:pw@host:port/db?x` → `mysql://user:pw@host:port/`.
fn server_base(url: &str) -> String {
    let authority_at = url.find("://").map_or(0, |i| i + 3);
    match url[authority_at..].find('/') {
        Some(slash) => url[..authority_at + slash + 1].to_owned(),
        None => format!("{url}/"),
    }
}

/// A name a database may take unquoted: lowercase letters, digits and `_`.
fn plain(name: &str) -> anyhow::Result<&str> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok { Ok(name) } else { anyhow::bail!("{name:?}: a database name here is lowercase letters, digits and `_`") }
}

/// Creates the database `name` on the server `url` names, in the character set and byte-compared
/// collation the schema expects, and returns its URL ([`database_url`]).
pub async fn create_database(url: &str, name: &str) -> anyhow::Result<String> {
    let name = plain(name)?;
    let mut admin = sqlx::MySqlConnection::connect(url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")))
        .execute(&mut admin)
        .await?;
    Ok(database_url(url, name))
}

/// Drops the database `name` on the server `url` names, with everything in it.
pub async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    let name = plain(name)?;
    let mut admin = sqlx::MySqlConnection::connect(&database_url(url, name)).await?;
    // A connection still in a transaction would make the drop wait forever.
    sqlx::query("SET SESSION lock_wait_timeout = 10").execute(&mut admin).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE `{name}`"))).execute(&mut admin).await?;
    Ok(())
}
