-- Herald's SQL truth, SQLite dialect. Times are milliseconds since the Unix epoch (UTC).
-- No table here ever receives one row per receiver per broadcast.

CREATE TABLE receivers (
    kind       TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    city       TEXT    NOT NULL,
    -- ';new;vip;' or '' (sorted): read back as is, and compared on upsert so that re-importing an
    -- unchanged receiver writes nothing. Selections test groups in `receiver_groups`.
    groups     TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
-- Keyset paging of one city: WHERE kind = ? AND city = ? AND id > ? ORDER BY id LIMIT 500.
CREATE INDEX receivers_by_city ON receivers (kind, city, id);

-- One row per (receiver, group), rewritten by the upsert when a receiver's groups change: a selection
-- of any number of groups is one EXISTS probe per receiver, with the groups bound as one JSON array.
CREATE TABLE receiver_groups (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    grp  TEXT NOT NULL,
    PRIMARY KEY (kind, id, grp)
) WITHOUT ROWID;

CREATE TABLE notifications (
    id                  TEXT    NOT NULL PRIMARY KEY,
    title               TEXT    NOT NULL,
    body                TEXT    NOT NULL,
    category            TEXT    NOT NULL,
    receiver_kind       TEXT    NOT NULL,
    audience            TEXT    NOT NULL,
    -- 1 for an include list (point-to-point): its tasks are paged before broadcast ones.
    direct              INTEGER NOT NULL,
    -- ';shanghai;beijing;' when the audience names cities, else '': the console's city filter.
    cities              TEXT    NOT NULL,
    pinned              INTEGER NOT NULL,
    force_read          INTEGER NOT NULL,
    valid_from          INTEGER,
    valid_until         INTEGER,
    send_at             INTEGER,
    draft               INTEGER NOT NULL,
    status              TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    sent_at             INTEGER,
    revoked_at          INTEGER,
    idempotency_key     TEXT UNIQUE,
    request_fingerprint TEXT
);
CREATE INDEX notifications_due ON notifications (status, send_at);
CREATE INDEX notifications_newest ON notifications (created_at, id);

CREATE TABLE notification_history (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT    NOT NULL,
    at              INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    detail          TEXT    NOT NULL
);
CREATE INDEX history_by_notification ON notification_history (notification_id, seq);

-- One row per (notification, city): the keyset position, so a restart resumes where it stopped.
CREATE TABLE send_tasks (
    notification_id TEXT    NOT NULL,
    city            TEXT    NOT NULL,
    matched         INTEGER NOT NULL,
    published       INTEGER NOT NULL DEFAULT 0,
    pages_published INTEGER NOT NULL DEFAULT 0,
    pages_delivered INTEGER NOT NULL DEFAULT 0,
    last_receiver   TEXT,
    -- An include list's members in this city (JSON array, ≤ 10,000 ids per notification): the
    -- snapshot this task pages. NULL for a selection, which is paged live from `receivers`.
    members         TEXT,
    finished        INTEGER NOT NULL DEFAULT 0,
    done            INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (notification_id, city)
);
CREATE INDEX send_tasks_open ON send_tasks (finished, notification_id);

-- One row per delivered page: what makes a redelivered page count once.
CREATE TABLE delivered_pages (
    notification_id TEXT    NOT NULL,
    city            TEXT    NOT NULL,
    page_no         INTEGER NOT NULL,
    added           INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (notification_id, city, page_no)
);

-- Pages written with their task's progress, published to the queue afterwards (transactional outbox).
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT    NOT NULL,
    tag        TEXT    NOT NULL,
    msg_key    TEXT    NOT NULL,
    body       BLOB    NOT NULL,
    created_at INTEGER NOT NULL
);
-- The relay reads each topic's oldest rows: direct pages never wait behind a broadcast's backlog.
CREATE INDEX outbox_by_topic ON outbox (topic, id);

-- A row per read: one per receiver action, never per broadcast.
CREATE TABLE read_receipts (
    notification_id TEXT    NOT NULL,
    receiver_kind   TEXT    NOT NULL,
    receiver_id     TEXT    NOT NULL,
    read_at         INTEGER NOT NULL,
    PRIMARY KEY (notification_id, receiver_kind, receiver_id)
);
-- Deleting a receiver deletes its receipts.
CREATE INDEX read_receipts_by_receiver ON read_receipts (receiver_kind, receiver_id);

-- What incremental sync reads to tell apps about revocations.
CREATE TABLE revocations (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT    NOT NULL,
    at              INTEGER NOT NULL
);

-- Queue messages that can never be delivered (a body that does not decode), kept for inspection.
CREATE TABLE dead_letters (
    msg_key TEXT    NOT NULL PRIMARY KEY,
    reason  TEXT    NOT NULL,
    body    BLOB    NOT NULL,
    at      INTEGER NOT NULL
);
