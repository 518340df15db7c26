-- The embedded queue: messages kept until every subscribed group has acked them.
CREATE TABLE messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT    NOT NULL,
    tag          TEXT    NOT NULL,
    msg_key      TEXT    NOT NULL,
    body         BLOB    NOT NULL,
    published_at INTEGER NOT NULL
);

-- What each consumer group listens to.
CREATE TABLE subscriptions (
    grp   TEXT NOT NULL,
    topic TEXT NOT NULL,
    tag   TEXT NOT NULL,
    PRIMARY KEY (grp, topic, tag)
) WITHOUT ROWID;

-- One row per (group, message) not yet acked. A pulled row is leased to its holder: hidden until
-- visible_at, or until the holder stops heartbeating. (seq, attempts) names the lease (the receipt).
CREATE TABLE pending (
    grp        TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    topic      TEXT    NOT NULL,  -- copied from messages: each topic is its own line, as in a broker
    attempts   INTEGER NOT NULL DEFAULT 0,
    visible_at INTEGER NOT NULL DEFAULT 0,
    holder     TEXT,              -- consumers.id of the lease holder; NULL when not leased
    PRIMARY KEY (grp, seq)
) WITHOUT ROWID;
CREATE INDEX pending_visible ON pending (grp, topic, visible_at, seq);
CREATE INDEX pending_by_seq ON pending (seq);

-- Consuming queue handles and when each last said it was alive.
CREATE TABLE consumers (
    id           TEXT    NOT NULL PRIMARY KEY,
    heartbeat_at INTEGER NOT NULL
) WITHOUT ROWID;
